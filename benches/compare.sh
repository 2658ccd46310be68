#!/usr/bin/env bash
# Palisade, nginx (proxy_cache) and Varnish (malloc storage) side by side, in
# one invocation, on the same deterministic origin, with equivalent settings:
# one worker (thread) each, 512 MiB of cache, request coalescing on. Each
# proxy is pinned to CPU 0, the load generator to CPU 1, the origins to CPU 1.
#
#   benches/compare.sh [SECONDS]        (default 10 per wrk run)
#
# Environment: OBJECTS (memory scenario, default 100000), ACCESS_LOG (json or
# combined: Palisade writes an access log file, as nginx and Varnish do not
# here; default off), PROXIES (default "palisade thin nginx varnish"; `thin`
# is examples/thin_proxy.rs, the smallest Pingora proxy forwarding to the
# origin with no cache: the floor of Pingora's own path, meaningful for
# `pass` (its hit and miss rows are pass-throughs too)), SCENARIOS
# (default "hit1k hit1m pass plain miss herd memory k6"; the table shows what ran),
# PALISADE_BIN (a prebuilt binary to measure instead of building
# target/release/palisade), BASE_BIN (a second Palisade build measured as
# the proxy `base` in the same run, same config: an A/B of two builds; add
# `base` to PROXIES; BASE_LEAN_FORWARDING=false runs it with
# `server.lean_forwarding: false`, so BASE_BIN=target/release/palisade is
# an A/B of the lean forward path). nginx's `/nostore` location runs without
# `proxy_cache_lock` (the lock serialises uncacheable responses), so `pass`
# compares forwarding costs.
#
# Scenarios (wrk for throughput, k6 for coalescing):
#   hit-1k     1 KiB cached object, keep-alive, wrk -c50
#   hit-1m     1 MiB cached object, keep-alive, wrk -c10 (MB/s)
#   pass       `Cache-Control: no-store` responses on a caching route, wrk -c50
#   plain      the same on a route with no cache (Palisade's lean forward
#              path; nginx `proxy_cache off`), wrk -c50
#   miss       a new cacheable 1 KiB key on every request, wrk -c50
#   herd       200 concurrent requests (k6) for a cold key behind a 200 ms
#              origin: how many reach the origin
#   memory     RSS growth after caching 100 000 distinct 1 KiB objects
#   k6         benches/k6/cache_hit.js and mixed.js (Zipf hits + 10 %
#              misses) at a moderate constant rate (K6_RATE, default 2000
#              req/s) for K6_SECONDS (default 10) each: thresholds and p99
#              (one k6 process saturates its core far below wrk's rate, so
#              k6 measures latency here, not throughput)
# Reported: req/s, p50/p99 latency, MB/s, CPU time per request on the
# proxy's core (user+system ticks of the proxy's processes from /proc, per
# request), and ratios relative to nginx. TLS is compared by
# benches/tls_compare.sh (Varnish does not terminate TLS).
#
# Needs `scripts/setup --bench` (nginx, varnish, wrk, k6); builds the release
# binary. Loopback only; ports are picked free at start.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

secs="${1:-10}"
objects="${OBJECTS:-100000}"
work="$(mktemp -d /tmp/palisade-compare.XXXXXX)"
chmod 755 "$work"   # nginx workers and varnish run as other users
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  kill_nginx "$work/origin"; kill_nginx "$work/nginx"
  [ -f "$work/varnish.pid" ] && kill -9 "$(cat "$work/varnish.pid")" 2>/dev/null || true
  pkill -9 -f "varnishd.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
hz="$(getconf CLK_TCK)"

for tool in nginx varnishd wrk k6 taskset; do
  command -v "$tool" >/dev/null || { echo "compare: $tool not found (run scripts/setup --bench)" >&2; exit 1; }
done
palisade_bin="${PALISADE_BIN:-}"
if [ -z "$palisade_bin" ]; then
  cargo build --release --quiet --bin palisade
  palisade_bin=./target/release/palisade
fi
cargo build --release --quiet --example thin_proxy

# --- Origins ------------------------------------------------------------------
origin_port="$(free_port)"; slow_port="$(free_port)"
mkdir -p "$work/origin/cached" "$work/origin/obj"
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/origin/cached/1k"
head -c 1048576 /dev/urandom > "$work/origin/cached/1m"
chmod -R a+rX "$work/origin"
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/origin/nginx.pid; error_log $work/origin/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; default_type application/octet-stream;
  server { listen 127.0.0.1:$origin_port; root $work/origin;
    location /cached/ { add_header Cache-Control "public, max-age=3600"; }
    location /obj/ { add_header Cache-Control "public, max-age=3600"; try_files /cached/1k =404; }
    location /nostore { add_header Cache-Control "no-store"; return 200 "not stored\n"; }
    location /plain/ { add_header Cache-Control "no-store"; return 200 "not stored\n"; } } }
CONF
taskset -c 1 nginx -q -p "$work/origin" -c "$work/origin/nginx.conf"

# The slow origin: 200 ms per response, counts what it serves (GET /count).
cat > "$work/slow.py" <<'PY'
import sys, time, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
count = 0
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
        else:
            with lock:
                count += 1
            time.sleep(0.2)
            body = b"slow " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=3600")
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer.request_queue_size = 1024
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
taskset -c 1 python3 "$work/slow.py" "$slow_port" &
pids+=("$!")
wait_port "$origin_port"; wait_port "$slow_port"

# --- Proxies ------------------------------------------------------------------
palisade_port="$(free_port)"; nginx_port="$(free_port)"; varnish_port="$(free_port)"; thin_port="$(free_port)"; base_port="$(free_port)"
access_log_output=off
[ -z "${ACCESS_LOG:-}" ] || access_log_output="$work/access.log"
cat > "$work/palisade.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p.pid, upgrade_socket: $work/p.sock }
logging: { level: warn, access_log: { output: $access_log_output, format: ${ACCESS_LOG:-json} } }
listeners: [{ name: bench, address: 127.0.0.1:$palisade_port }]
upstreams:
  origin: { backends: [127.0.0.1:$origin_port] }
  slow: { backends: [127.0.0.1:$slow_port], read_timeout: 10s }
cache:
  max_size: 512MiB
  max_object_size: 2MiB
  policies: { default: { cache_status: false } }
routes:
  - { name: slow, match: { path_prefix: /slow }, upstream: slow, cache: default }
  - { name: plain, match: { path_prefix: /plain }, upstream: origin }
  - { name: origin, upstream: origin, cache: default }
CONF
mkdir -p "$work/nginx/cache"; chmod 777 "$work/nginx/cache"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $work/nginx/cache keys_zone=c:64m max_size=512m levels=1:2;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 64; }
  upstream slow { server 127.0.0.1:$slow_port; keepalive 16; }
  server { listen 127.0.0.1:$nginx_port;
    proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_cache c; proxy_cache_lock on; proxy_cache_lock_timeout 10s;
    location /slow { proxy_pass http://slow; }
    location /nostore { proxy_pass http://origin; proxy_cache_lock off; }
    location /plain/ { proxy_pass http://origin; proxy_cache off; }
    location / { proxy_pass http://origin; } } }
CONF
cat > "$work/varnish.vcl" <<CONF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$origin_port"; }
backend slow { .host = "127.0.0.1"; .port = "$slow_port"; .first_byte_timeout = 10s; }
sub vcl_recv { if (req.url ~ "^/slow") { set req.backend_hint = slow; } else { set req.backend_hint = origin; } }
CONF
chmod 644 "$work/varnish.vcl"

taskset -c 0 "$palisade_bin" run -c "$work/palisade.yaml" 2>"$work/palisade.log" &
pids+=("$!"); palisade_pid="$!"
if [ -n "${BASE_BIN:-}" ]; then
  sed -e "s/127.0.0.1:$palisade_port/127.0.0.1:$base_port/" -e "s|$work/p\.|$work/base.|g" \
    -e "s/^server: { /server: { lean_forwarding: ${BASE_LEAN_FORWARDING:-true}, /" \
    "$work/palisade.yaml" > "$work/base.yaml"
  taskset -c 0 "$BASE_BIN" run -c "$work/base.yaml" 2>"$work/base.log" &
  pids+=("$!"); base_pid="$!"
fi
taskset -c 0 target/release/examples/thin_proxy "127.0.0.1:$thin_port" "127.0.0.1:$origin_port" 2>"$work/thin.log" &
pids+=("$!"); thin_pid="$!"
taskset -c 0 nginx -q -p "$work/nginx" -c "$work/nginx/nginx.conf"
taskset -c 0 varnishd -n "$work/varnish" -P "$work/varnish.pid" -a "127.0.0.1:$varnish_port" \
  -f "$work/varnish.vcl" -s malloc,512m -p thread_pools=1 -p thread_pool_min=100 -p thread_pool_max=500 \
  -j none 2>"$work/varnish.err" || { cat "$work/varnish.err" >&2; exit 1; }
for p in "$palisade_port" "$nginx_port" "$varnish_port" "$thin_port"; do wait_port "$p"; done
[ -z "${BASE_BIN:-}" ] || wait_port "$base_port"

# The processes whose CPU time counts for each proxy.
proc_list() {
  case "$1" in
    palisade) echo "$palisade_pid" ;;
    thin) echo "$thin_pid" ;;
    base) echo "$base_pid" ;;
    nginx) local m; m="$(cat "$work/nginx/nginx.pid")"; echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    varnish) local m; m="$(cat "$work/varnish.pid")"; echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
  esac
}
ticks() { local t=0 p; for p in $(proc_list "$1"); do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
rss_kib() { local t=0 p; for p in $(proc_list "$1"); do t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done; echo "$t"; }
port_of() { case "$1" in palisade) echo "$palisade_port" ;; base) echo "$base_port" ;; thin) echo "$thin_port" ;; nginx) echo "$nginx_port" ;; varnish) echo "$varnish_port" ;; esac; }

declare -A result
# wrk_run PROXY SCENARIO PATH CONNECTIONS [WRK_LUA]: fills result[PROXY.SCENARIO.*]
wrk_run() {
  local proxy="$1" scenario="$2" path="$3" conns="$4" script=() port url before after out
  [ -n "${5:-}" ] && script=(-s "$5")
  port="$(port_of "$proxy")"; url="http://127.0.0.1:$port$path"
  curl -s -o /dev/null "$url"; curl -s -o /dev/null "$url"   # warm the cache
  before="$(ticks "$proxy")"
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "${script[@]}" "$url")"
  after="$(ticks "$proxy")"
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    grep -E "Non-2xx|Socket errors" <<<"$out" | sed "s/^/  $proxy $scenario: /" >&2
  fi
  result[$proxy.$scenario.rps]="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  result[$proxy.$scenario.p50]="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  result[$proxy.$scenario.p99]="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  result[$proxy.$scenario.mbs]="$(awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; if (u=="KB") n/=1024; print n}' <<<"$out")"
  result[$proxy.$scenario.cpu]="$(awk -v t=$((after - before)) -v hz="$hz" -v r="${result[$proxy.$scenario.rps]}" -v s="$secs" \
    'BEGIN { printf "%.1f", (t / hz) / (r * s) * 1e6 }')"
}

herd_run() {
  local proxy="$1" port before after
  port="$(port_of "$proxy")"
  before="$(curl -s "http://127.0.0.1:$slow_port/count")"
  taskset -c 1 k6 run --quiet --no-summary -e "TARGET=http://127.0.0.1:$port/slow/$proxy-$RANDOM$RANDOM" \
    benches/k6/herd.js >"$work/herd-$proxy.log" 2>&1 || result[$proxy.herd.failed]="k6 thresholds failed"
  after="$(curl -s "http://127.0.0.1:$slow_port/count")"
  result[$proxy.herd.origin]=$((after - before))
}

# k6_run PROXY NAME SCRIPT ARGS...: thresholds verdict and p99 of a k6 scenario.
k6_run() {
  local proxy="$1" name="$2" script="$3" port verdict; shift 3
  port="$(port_of "$proxy")"
  verdict=pass
  taskset -c 1 k6 run --quiet --summary-export "$work/k6-$proxy-$name.json" \
    -e "DURATION=${K6_SECONDS:-10}s" -e "RATE=${K6_RATE:-2000}" "$@" -e "BASE=http://127.0.0.1:$port" \
    -e "TARGET=http://127.0.0.1:$port/cached/1k" "$script" >"$work/k6-$proxy-$name.log" 2>&1 || verdict=FAIL
  result[$proxy.k6$name.verdict]="$verdict"
  result[$proxy.k6$name.p99]="$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["metrics"]; print("%.2f" % m["http_req_duration"]["p(99)"]); ' "$work/k6-$proxy-$name.json" 2>/dev/null || echo -)"
}

# Fills OBJECTS distinct 1 KiB objects (/obj/N) and reports RSS growth.
memory_run() {
  local proxy="$1" port before after
  port="$(port_of "$proxy")"
  cat > "$work/fill.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/obj/" .. ((counter - 1) % $objects))
end
LUA
  before="$(rss_kib "$proxy")"
  # Enough time to request every key at least once at a few thousand req/s.
  taskset -c 1 wrk -t1 -c4 -d"$(( objects / 4000 + 10 ))s" -s "$work/fill.lua" "http://127.0.0.1:$port/" >/dev/null
  after="$(rss_kib "$proxy")"
  result[$proxy.mem.kib]=$((after - before))
  result[$proxy.mem.per_object]="$(awk -v k=$((after - before)) -v n="$objects" 'BEGIN { printf "%.0f", k * 1024 / n }')"
}

read -r -a proxies <<<"${PROXIES:-palisade thin nginx varnish}"
read -r -a scenarios <<<"${SCENARIOS:-hit1k hit1m pass plain miss herd memory k6}"
# A new key on every request: /obj/ answers any path with a cacheable 1 KiB.
cat > "$work/miss.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/obj/miss-$RANDOM-" .. counter)
end
LUA
wants() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }
echo "compare: ${secs}s per wrk run; proxies pinned to CPU 0, wrk/k6 and origins to CPU 1" >&2
for proxy in "${proxies[@]}"; do
  echo "compare: $proxy" >&2
  wants hit1k && wrk_run "$proxy" hit1k /cached/1k 50
  wants hit1m && wrk_run "$proxy" hit1m /cached/1m 10
  wants pass && wrk_run "$proxy" pass /nostore 50
  wants plain && wrk_run "$proxy" plain /plain/nostore 50
  wants miss && wrk_run "$proxy" miss /obj/miss-warm 50 "$work/miss.lua"
  wants herd && herd_run "$proxy"
  wants memory && memory_run "$proxy"   # before mixed.js, which caches /obj/N keys too
  if wants k6; then
    k6_run "$proxy" hit benches/k6/cache_hit.js -e VUS=100
    k6_run "$proxy" mixed benches/k6/mixed.js -e VUS=100
  fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { u = v; gsub(/[0-9.]/, "", u); n = v + 0; if (u == "us") n /= 1000; if (u == "s") n *= 1000; printf "%.2f", n }'; }

printf "\n%s, %s, %s\n" "$(date -u +%Y-%m-%d)" "$(nproc) CPUs ($(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'))" "1 worker each"
printf "%-9s %-9s %12s %9s %9s %10s %11s %10s %10s\n" scenario proxy "req/s" "p50 ms" "p99 ms" "MB/s" "CPU us/req" "req/s÷ng" "CPU÷ng"
for scenario in hit1k hit1m pass plain miss; do
  wants "$scenario" || continue
  for proxy in "${proxies[@]}"; do
    printf "%-9s %-9s %12.0f %9s %9s %10.1f %11s %10s %10s\n" "$scenario" "$proxy" \
      "${result[$proxy.$scenario.rps]}" "$(ms "${result[$proxy.$scenario.p50]}")" "$(ms "${result[$proxy.$scenario.p99]}")" \
      "${result[$proxy.$scenario.mbs]}" "${result[$proxy.$scenario.cpu]}" \
      "$(ratio "${result[$proxy.$scenario.rps]}" "${result[nginx.$scenario.rps]:-}")" \
      "$(ratio "${result[$proxy.$scenario.cpu]}" "${result[nginx.$scenario.cpu]:-}")"
  done
done
wants herd && printf "\n%-9s %-9s %16s\n" scenario proxy "origin requests"
wants herd && for proxy in "${proxies[@]}"; do
  printf "%-9s %-9s %16s %s\n" herd "$proxy" "${result[$proxy.herd.origin]}" "${result[$proxy.herd.failed]:-}"
done
wants k6 && printf "\n%-9s %-9s %12s %10s   (k6 at %s req/s)\n" scenario proxy "thresholds" "p99 ms" "${K6_RATE:-2000}"
wants k6 && for name in hit mixed; do
  for proxy in "${proxies[@]}"; do
    printf "%-9s %-9s %12s %10s\n" "k6-$name" "$proxy" "${result[$proxy.k6$name.verdict]}" "${result[$proxy.k6$name.p99]}"
  done
done
wants memory || exit 0
printf "\n%-9s %-9s %14s %16s %10s\n" scenario proxy "RSS growth MiB" "bytes/object" "÷nginx"
for proxy in "${proxies[@]}"; do
  printf "%-9s %-9s %14.1f %16s %10s\n" "memory" "$proxy" "$(awk -v k="${result[$proxy.mem.kib]}" 'BEGIN { print k / 1024 }')" \
    "${result[$proxy.mem.per_object]}" "$(ratio "${result[$proxy.mem.per_object]}" "${result[nginx.mem.per_object]:-}")"
done
echo "(memory: $objects distinct 1 KiB bodies; nginx keeps bodies in files, i.e. the page cache, not its RSS)"
