#!/usr/bin/env bash
# What on-the-fly compression costs and saves: a 100 KiB HTML body from a
# local nginx origin through Palisade (one worker, pinned to CPU 0; origin
# and wrk on CPU 1), on a caching route with `compression: {}`.
#
#   benches/compression.sh [SECONDS]     (default 10; needs scripts/setup --bench)
#
# Prints the bytes each coding sends, then req/s and the proxy's CPU time
# per request for: a brotli hit (stored compressed: no compression work),
# brotli misses (a new key per request: compressed every time), and the
# same misses without Accept-Encoding (identity, for the difference).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
secs=${1:-10}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { kill_pids "${pids[@]}"; kill_nginx "$work"; rm -rf "$work"; }
trap cleanup EXIT

scripts/setup --bench >/dev/null
cargo build --release --locked --quiet
origin=$(free_port); proxy=$(free_port)
python3 - "$work/page.html" <<'PY'
import sys
rows = []
i = 0
while sum(map(len, rows)) < 100 * 1024:
    rows.append(f'<tr><td class="id">{i}</td><td>item {i * 7919 % 1000}</td><td>{(i * 37) % 97} in stock</td></tr>\n')
    i += 1
open(sys.argv[1], "w").write("<!doctype html><html><body><table>\n" + "".join(rows) + "</table></body></html>\n")
PY
cat >"$work/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin;
    location / { root $work; try_files /page.html =404; default_type text/html;
                 add_header Cache-Control "max-age=3600"; } } }
CONF
palisade_head "$work" "$proxy" "$origin" >"$work/palisade.yaml"
cat >>"$work/palisade.yaml" <<CONF
cache: { max_size: 2GiB }
routes: [{ upstream: origin, cache: {}, compression: {} }]
CONF
cat >"$work/unique.lua" <<'LUA'
counter = 0
request = function() counter = counter + 1; return wrk.format("GET", "/p/" .. counter) end
LUA
taskset -c 1 nginx -c "$work/nginx.conf"
taskset -c 0 ./target/release/palisade run -c "$work/palisade.yaml" >"$work/palisade.log" 2>&1 & pid=$!; pids+=($pid)
wait_port "$origin"; wait_port "$proxy"

echo "bytes sent for the 100 KiB page:"
for ae in identity gzip br zstd; do
  size=$(curl -s -H "Accept-Encoding: $ae" "http://127.0.0.1:$proxy/bytes" | wc -c)
  echo "  $ae: $size"
done
hz=$(getconf CLK_TCK)
run() {
  local name="$1"; shift
  local before after out rps
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c20 -d"${secs}s" "$@" 2>&1)
  after=$(cpu_ticks "$pid")
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  python3 -c "rps=$rps; cpu=($after-$before)/$hz; print(f'  {\"$name\":24} {rps:>9.0f} req/s  {cpu/(rps*$secs)*1e6:7.1f} us CPU/req')"
}
curl -s -o /dev/null -H "Accept-Encoding: br" "http://127.0.0.1:$proxy/hit"
echo "throughput (wrk -t1 -c20 -d${secs}s):"
run "br hit" -H "Accept-Encoding: br" "http://127.0.0.1:$proxy/hit"
run "br miss" -H "Accept-Encoding: br" -s "$work/unique.lua" "http://127.0.0.1:$proxy"
run "gzip miss" -H "Accept-Encoding: gzip" -s "$work/unique.lua" "http://127.0.0.1:$proxy"
run "identity miss" -s "$work/unique.lua" "http://127.0.0.1:$proxy"
