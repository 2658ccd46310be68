#!/usr/bin/env bash
# TLS throughput and handshake rate, Palisade against nginx, same
# certificate (ECDSA P-256 from scripts/example-certs), same origin, one
# worker each pinned to CPU 0, wrk pinned to CPU 1.
#
#   benches/tls_compare.sh [SECONDS]      (default 10 per run)
#
# Runs: keep-alive 1 KiB cache hits over TLS (wrk -c50), and new TLS
# connections (wrk with `Connection: close`: one full handshake per
# request). Prints req/s, p99 and CPU time per request of the proxy process.
# Needs `scripts/setup --bench` (nginx, wrk); builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

secs="${1:-10}"
work="$(mktemp -d /tmp/palisade-tls.XXXXXX)"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  kill_nginx "$work/origin"; kill_nginx "$work/nginx"
  rm -rf "$work"
}
trap cleanup EXIT

hz="$(getconf CLK_TCK)"

./scripts/example-certs >/dev/null
cargo build --release --quiet --bin palisade
cert="$PWD/conf/examples/certs/example.com.crt"
key="$PWD/conf/examples/certs/example.com.key"

origin_port="$(free_port)"; nginx_port="$(free_port)"; palisade_port="$(free_port)"
mkdir -p "$work/origin" "$work/nginx/cache"
chmod 755 "$work" "$work/origin"   # nginx workers run as nobody
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/origin/1k"
chmod 644 "$work/origin/1k"
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/origin/nginx.pid; error_log $work/origin/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; root $work/origin;
    location / { add_header Cache-Control "public, max-age=3600"; } } }
CONF
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $work/nginx/cache keys_zone=c:64m max_size=256m;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port ssl http2; server_name example.com;
    ssl_certificate $cert; ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache c; proxy_cache_lock on; } } }
CONF
cat > "$work/palisade.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p.pid, upgrade_socket: $work/p.sock }
logging: { level: warn }
listeners:
  - name: https
    address: 127.0.0.1:$palisade_port
    tls: { certificates: [{ cert: $cert, key: $key }] }
upstreams: { origin: { backends: [127.0.0.1:$origin_port] } }
cache: { policies: { default: {} } }
routes: [{ upstream: origin, cache: default }]
CONF

taskset -c 1 nginx -q -p "$work/origin" -c "$work/origin/nginx.conf"
taskset -c 0 nginx -q -p "$work/nginx" -c "$work/nginx/nginx.conf"
taskset -c 0 ./target/release/palisade run -c "$work/palisade.yaml" 2>"$work/palisade.log" &
pids+=("$!")
for p in "$origin_port" "$nginx_port" "$palisade_port"; do wait_port "$p"; done
nginx_worker="$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | head -1)"

run() { # name pid port extra-wrk-args...
  local name="$1" pid="$2" port="$3"; shift 3
  local url="https://127.0.0.1:$port/1k"
  local code
  code="$(curl -sk -o /dev/null -w "%{http_code}" "$url")"; curl -sk -o /dev/null "$url"   # warm the cache
  [ "$code" = 200 ] || { echo "$name: $url answered $code" >&2; exit 1; }
  local before after out rps p50 p99
  before="$(cpu_ticks "$pid")"
  out="$(taskset -c 1 wrk -t1 -d"${secs}s" --latency "$@" "$url")"
  after="$(cpu_ticks "$pid")"
  grep -E "Socket errors|Non-2xx" <<<"$out" | sed "s/^/    $name: /" >&2 || true
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  awk -v n="$name" -v r="$rps" -v m="$p50" -v p="$p99" -v t=$((after - before)) -v hz="$hz" -v s="$secs" \
    'BEGIN { printf "%-34s %10.0f req/s   p50 %-8s p99 %-8s  %6.1f us CPU/req\n", n, r, m, p, (t / hz) / (r * s) * 1e6 }'
}

echo "TLS, 1 KiB cache hits, ${secs}s per run, proxy on CPU 0, wrk on CPU 1"
run "palisade keep-alive (-c50)" "${pids[0]}" "$palisade_port" -c50
run "nginx keep-alive (-c50)" "$nginx_worker" "$nginx_port" -c50
# Fewer connections than the proxy can serve in one pass of its event
# loop: where the tail is queueing behind other connections, it shrinks
# with them.
run "palisade keep-alive (-c4)" "${pids[0]}" "$palisade_port" -c4
run "nginx keep-alive (-c4)" "$nginx_worker" "$nginx_port" -c4
run "palisade new connection per request" "${pids[0]}" "$palisade_port" -c16 -H "Connection: close"
run "nginx new connection per request" "$nginx_worker" "$nginx_port" -c16 -H "Connection: close"
