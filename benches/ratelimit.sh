#!/usr/bin/env bash
# Runs benches/k6/ratelimit.js against a release Palisade whose only route is
# limited to RATE req/s (key: route, burst 10) in front of a local nginx.
#
#   benches/ratelimit.sh [RATE] [DURATION]     (defaults: 500, 30s)
#
# Needs `scripts/setup --bench` (nginx, k6). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

rate="${1:-500}"
duration="${2:-30s}"
work="$(mktemp -d /tmp/palisade-ratelimit.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  kill_nginx "$work"
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin palisade
origin_port="$(free_port)"; proxy_port="$(free_port)"
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$origin_port; location / { return 200 "ok\n"; } } }
CONF
nginx -q -p "$work" -c "$work/nginx.conf"
cat > "$work/palisade.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p.pid, upgrade_socket: $work/p.sock }
logging: { level: warn }
listeners: [{ name: bench, address: 127.0.0.1:$proxy_port }]
upstreams: { origin: { backends: [127.0.0.1:$origin_port] } }
limits: { fixed: { rate: $rate/s, burst: 10, key: route } }
routes: [{ upstream: origin, limits: fixed }]
CONF
./target/release/palisade run -c "$work/palisade.yaml" 2>"$work/palisade.log" &
pids+=("$!")
wait_port "$origin_port"; wait_port "$proxy_port"
k6 run --quiet -e "TARGET=http://127.0.0.1:$proxy_port/" -e "RATE=$rate" -e "DURATION=$duration" benches/k6/ratelimit.js
