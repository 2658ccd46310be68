#!/usr/bin/env bash
# Failover under load: three nginx origins behind one Palisade pool, steady
# k6 GET traffic, and one origin killed (SIGKILL, mid-connection) and
# restarted while it runs. k6's thresholds require zero failed requests.
#
#   benches/failover.sh [DURATION]      (default 30s; kill at 1/3, restart at 2/3)
#
# Needs `scripts/setup --bench` (nginx, k6) and builds the release binary.
# Loopback only; ports are picked free at start.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

duration_s="${1:-30s}"
duration_s="${duration_s%s}"
work="$(mktemp -d /tmp/palisade-failover.XXXXXX)"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  for n in a b c; do kill_nginx "$work/$n"; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin palisade

declare -A port
for n in a b c; do
  port[$n]="$(free_port)"
  static_origin "$n" "${port[$n]}" "$work/$n"
done
kill_origin() { kill_nginx "$work/$1"; }
start_origin() { nginx -q -p "$work/$1" -c "$work/$1/nginx.conf"; wait_port "${port[$1]}"; }
for n in a b c; do start_origin "$n"; done

proxy_port="$(free_port)"
cat > "$work/palisade.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s }
logging: { level: warn }
listeners: [{ name: bench, address: 127.0.0.1:$proxy_port }]
upstreams:
  pool:
    backends: [127.0.0.1:${port[a]}, 127.0.0.1:${port[b]}, 127.0.0.1:${port[c]}]
    connect_timeout: 1s
    read_timeout: 2s
    max_retries: 2
    health_check: { path: /healthz, interval: 1s, timeout: 500ms, unhealthy_threshold: 2, healthy_threshold: 2 }
    passive_health: { consecutive_failures: 3, base_ejection: 2s, max_ejection: 10s }
routes: [{ upstream: pool }]
CONF
./target/release/palisade run -c "$work/palisade.yaml" 2> "$work/palisade.log" &
pids+=("$!")
wait_port "$proxy_port"

(
  sleep $((duration_s / 3))
  echo "failover: $(date +%T) killing origin a (SIGKILL)" >&2
  kill_origin a
  sleep $((duration_s / 3))
  echo "failover: $(date +%T) restarting origin a" >&2
  rm -f "$work/a/nginx.pid"
  start_origin a
) &
pids+=("$!")

status=0
k6 run --quiet -e "TARGET=http://127.0.0.1:$proxy_port/" -e "DURATION=${duration_s}s" \
  benches/k6/failover.js || status=$?
kill -TERM "${pids[0]}" 2>/dev/null || true
wait "${pids[0]}" 2>/dev/null || true
echo
echo "palisade log (warnings):"
grep -E "WARN|ERROR" "$work/palisade.log" | sed 's/^/  /' | tail -20 || true
exit "$status"
