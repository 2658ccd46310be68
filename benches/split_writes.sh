#!/usr/bin/env bash
# Origins that write the response header and body in two segments with
# Nagle on (`python3 -m http.server --protocol HTTP/1.1`): on a kept-alive
# upstream connection each response used to wait for the proxy's delayed
# ACK of the header (≈ 40 ms) before the origin's kernel released the body.
#
#   benches/split_writes.sh [SECONDS] [BINARY...]   (default 5 s, target/release/palisade)
#
# For each binary: one Palisade worker thread in front of the origin on a
# route without cache, `wrk -c1` (one request at a time, so every response
# rides the same kept-alive upstream connection) then `wrk -c8`; prints
# req/s and mean latency. With nginx installed (scripts/setup --bench) the
# same origin behind nginx (`proxy_http_version 1.1`, upstream keepalive)
# is measured as a reference. Needs wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

seconds="${1:-5}"; shift || true
bins=("$@"); [ "${#bins[@]}" -gt 0 ] || bins=(target/release/palisade)
command -v wrk >/dev/null || { echo "split_writes: wrk not found (run scripts/setup --bench)" >&2; exit 1; }
work="$(mktemp -d /tmp/palisade-split.XXXXXX)"
pids=()
cleanup() { kill_pids "${pids[@]}"; kill_nginx "$work/nginx"; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/www"
head -c 1024 /dev/zero | tr '\0' x > "$work/www/1k.txt"
origin_port="$(free_port)"
(cd "$work/www" && exec python3 -m http.server --protocol HTTP/1.1 --bind 127.0.0.1 "$origin_port" >/dev/null 2>&1) & pids+=($!)
wait_port "$origin_port"

measure() { # NAME PORT
  local c out
  for c in 1 8; do
    out="$(wrk -t1 -c"$c" -d"${seconds}s" "http://127.0.0.1:$2/1k.txt")"
    printf '%-34s c=%-2s %10s req/s  mean %s\n' "$1" "$c" \
      "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
      "$(awk '/Latency/ {print $2; exit}' <<<"$out")"
  done
}

for bin in "${bins[@]}"; do
  port="$(free_port)"
  { palisade_head "$work" "$port" "$origin_port"; echo "routes: [ { upstream: origin } ]"; } > "$work/palisade.yaml"
  "$bin" run -c "$work/palisade.yaml" >"$work/palisade.log" 2>&1 & pid=$!
  pids+=($pid)
  wait_port "$port"
  measure "$bin" "$port"
  kill_pids "$pid"
done

if command -v nginx >/dev/null; then
  port="$(free_port)"
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  upstream origin { server 127.0.0.1:$origin_port; keepalive 16; }
  server {
    listen 127.0.0.1:$port;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
  wait_port "$port"
  measure nginx "$port"
fi
