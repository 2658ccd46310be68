#!/usr/bin/env bash
# Measures what a cached object costs: fills Palisade's cache with N distinct
# 1 KiB objects from a local nginx origin and reports the process's resident
# memory per object, next to the weight the cache accounts for it. Then times
# the cache inspection and ban endpoints on that full cache (a listing that
# scans every object, a bounded prefix listing, one entry, a ban's sweep).
#
#   benches/cache_memory.sh [N]        (default 100000; needs scripts/setup --bench)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
N=${1:-100000}
work=$(mktemp -d)
chmod 755 "$work"   # the nginx worker (nobody) serves the body from here
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

scripts/setup --bench >/dev/null
cargo build --release --locked --quiet
origin=$(free_port); proxy=$(free_port); admin=$(free_port)
token=bench-token-0123456789

head -c 1024 /dev/zero | tr '\0' 'x' >"$work/body"
cat >"$work/origin.conf" <<CONF
worker_processes 1; daemon off; error_log $work/origin.err; pid $work/origin.pid;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$origin;
    location / { root $work; try_files /body =404; default_type text/plain;
                 add_header Cache-Control "public, max-age=3600"; } } }
CONF
palisade_head "$work" "$proxy" "$origin" >"$work/palisade.yaml"
cat >>"$work/palisade.yaml" <<CONF
cache: { max_size: 2GiB, policies: { default: {} } }
routes: [{ upstream: origin, cache: default }]
admin: { address: "127.0.0.1:$admin", token: $token }
CONF
cat >"$work/unique.lua" <<'LUA'
counter = 0
request = function() counter = counter + 1; return wrk.format("GET", "/obj/" .. counter) end
LUA

taskset -c 1 nginx -c "$work/origin.conf" & pids+=($!)
taskset -c 0 ./target/release/palisade run -c "$work/palisade.yaml" >"$work/palisade.log" 2>&1 & pid=$!; pids+=($pid)
for port in "$origin" "$proxy" "$admin"; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
stats() { curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/cache/stats"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$pid/status"; }
curl -s -o /dev/null "http://127.0.0.1:$proxy/warm"; curl -s -o /dev/null "http://127.0.0.1:$proxy/warm"
before=$(rss)
timeout 120 taskset -c 1 wrk -t1 -c20 -d120s -s "$work/unique.lua" "http://127.0.0.1:$proxy" >/dev/null 2>&1 & wrk=$!
deadline=$((SECONDS + 110))
while [ "$(stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"])')" -lt "$N" ]; do
  if [ "$SECONDS" -gt "$deadline" ] || ! kill -0 "$wrk" 2>/dev/null; then
    echo "cache_memory: the cache did not reach $N objects; stats: $(stats)" >&2
    curl -s -D - -o /dev/null "http://127.0.0.1:$proxy/obj/probe" >&2
    exit 1
  fi
  sleep 0.2
done
kill "$wrk" 2>/dev/null || true; sleep 0.5
after=$(rss)
stats | python3 -c "
import json, sys
s = json.load(sys.stdin); n = s['objects']
per = ($after - $before) * 1024 / n
print(f'objects:            {n}')
print(f'RSS growth:         {$after - $before} KiB ({$before} -> {$after})')
print(f'RSS per object:     {per:.0f} bytes ({per / 1024:.2f}x the 1 KiB body)')
print(f'weight per object:  {s[\"bytes\"] / n:.0f} bytes (what max_size accounts)')"
admin_get() { curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" "http://127.0.0.1:$admin$1"; }
echo "inspection on $N objects (curl time_total, seconds):"
echo "  /cache/keys, prefix matching nothing (scans all): $(admin_get '/cache/keys?prefix=http://nowhere/&limit=10')"
echo "  /cache/keys?limit=10000:                          $(admin_get '/cache/keys?limit=10000')"
echo "  /cache/keys, prefix /obj/12 limit 100:           $(admin_get "/cache/keys?prefix=http://127.0.0.1:$proxy/obj/12&limit=100")"
echo "  /cache/entry:                                      $(admin_get "/cache/entry?url=http://127.0.0.1:$proxy/obj/42")"
ban_started=$(date +%s.%N)
curl -s -o /dev/null -H "Authorization: Bearer $token" -d '{"ban": "/obj/9[0-9]*$"}' "http://127.0.0.1:$admin/cache/purge"
ban_answered=$(date +%s.%N)
until curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/cache/bans" | grep -q '"swept":true'; do sleep 0.01; done
ban_swept=$(date +%s.%N)
removed=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/cache/bans" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bans"][0]["removed"])')
python3 -c "print(f'  ban answered in {($ban_answered - $ban_started)*1000:.1f} ms; swept in {($ban_swept - $ban_started)*1000:.0f} ms, removing $removed objects')"
