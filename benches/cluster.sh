#!/usr/bin/env bash
# The fleet (cache.cluster, docs/fleet.md) on loopback, one thread per node:
#  1. origin requests for a Zipf workload (k6, benches/k6/cluster_zipf.js)
#     over three sharded nodes vs three independent caches;
#  2. CPU per request of a peer fetch (a non-owner answering through the
#     owner's cache, no local copy) next to a local hit, with wrk;
#  3. how long a purge takes to be applied by every node (purge_stream on a
#     local redis-server): the time until the answer reports all three.
#
#   benches/cluster.sh [BIN]      (default target/release/palisade)
# Needs scripts/setup --test --bench (redis-server, nginx, wrk, k6). Bounded: 3 × 5 s of wrk,
# two k6 runs of REQUESTS (default 50 000) requests.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
BIN="${1:-target/release/palisade}"
REQUESTS="${REQUESTS:-50000}"
KEYS="${KEYS:-10000}"
DURATION="${DURATION:-5s}"
work="$(mktemp -d)"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  kill_nginx "$work/origin"
  [ -z "${redis_pid:-}" ] || kill_pids "$redis_pid"
  rm -rf "$work"
}
trap cleanup EXIT
tck="$(getconf CLK_TCK)"

origin_port="$(free_port)"
mkdir -p "$work/origin"
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log;
events { worker_connections 1024; }
http {
  access_log $work/origin/access.log;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$origin_port;
    location / { add_header Cache-Control "max-age=600"; return 200 "$(head -c 1000 /dev/zero | tr '\0' x)\n"; }
  }
}
CONF
nginx -c "$work/origin/nginx.conf" -p "$work/origin"
wait_port "$origin_port"
origin_requests() { wc -l < "$work/origin/access.log"; }

ports=("$(free_port)" "$(free_port)" "$(free_port)")
admin=("$(free_port)" "$(free_port)" "$(free_port)")
nodes_yaml="[127.0.0.1:${ports[0]}, 127.0.0.1:${ports[1]}, 127.0.0.1:${ports[2]}]"

# start_fleet SHARED LOCAL_COPY_TTL [REDIS_PORT]
start_fleet() {
  kill_pids "${pids[@]}"
  pids=()
  for i in 0 1 2; do
    local dir="$work/node$i"
    mkdir -p "$dir"
    {
      palisade_head "$dir" "${ports[$i]}" "$origin_port"
      cat <<YAML
admin: { address: "127.0.0.1:${admin[$i]}", token: bench-admin-token-0123456789 }
cache:
  max_size: 512MiB
  cluster:
    this_node: 127.0.0.1:${ports[$i]}
    nodes: $nodes_yaml
    secret: "a bench secret that is at least 32 bytes long"
    local_copy_ttl: $2
$([ -z "${3:-}" ] || echo "    purge_stream: { address: \"127.0.0.1:$3\", ack_wait: 2s }")
  policies:
    shared: { cluster: $1 }
routes: [ { upstream: origin, cache: shared } ]
YAML
    } > "$dir/palisade.yaml"
    taskset -c 0 "$BIN" run -c "$dir/palisade.yaml" > "$dir/log" 2>&1 &
    pids+=("$!")
  done
  for i in 0 1 2; do wait_port "${ports[$i]}"; done
  sleep 1.5 # the nodes' first health probes
}

metric() { # metric ADMIN_PORT NAME
  curl -s -H "Authorization: Bearer bench-admin-token-0123456789" "http://127.0.0.1:$1/metrics" \
    | awk -v n="$2" '$1 == n { print $2 }'
}

urls="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]},http://127.0.0.1:${ports[2]}"
echo "== Zipf: $REQUESTS requests over $KEYS keys, spread over three nodes =="
for mode in sharded independent; do
  shared=true; [ "$mode" = independent ] && shared=false
  start_fleet "$shared" 5s
  : > "$work/origin/access.log"
  taskset -c 1 k6 run -q --no-summary -e NODES="$urls" -e REQUESTS="$REQUESTS" -e KEYS="$KEYS" \
    benches/k6/cluster_zipf.js > "$work/k6-$mode.log" 2>&1 || { cat "$work/k6-$mode.log"; exit 1; }
  distinct="$(grep -o '/k/[0-9]*' "$work/origin/access.log" | sort -u | wc -l)"
  echo "$mode: origin requests $(origin_requests) (distinct keys among them: $distinct)"
done

echo "== CPU per request: peer fetch (non-owner through the owner) vs local hit =="
start_fleet true 0s
# A key owned by node 1, asked of node 0.
owner_key=""
for k in $(seq 0 200); do
  before="$(metric "${admin[1]}" palisade_cluster_peer_requests_total)"
  curl -s -o /dev/null -H "Host: fleet.example" "http://127.0.0.1:${ports[0]}/cpu/$k"
  after="$(metric "${admin[1]}" palisade_cluster_peer_requests_total)"
  if [ "${after:-0}" != "${before:-0}" ]; then owner_key="/cpu/$k"; break; fi
done
[ -n "$owner_key" ] || { echo "no key owned by node 1 found" >&2; exit 1; }
run() { # run LABEL URL PID...
  local label="$1" url="$2"; shift 2
  local before=0 after=0 p
  for p in "$@"; do before=$((before + $(cpu_ticks "$p"))); done
  local out; out="$(taskset -c 1 wrk -t1 -c20 -d"$DURATION" -H "Host: fleet.example" "$url")"
  for p in "$@"; do after=$((after + $(cpu_ticks "$p"))); done
  local reqs; reqs="$(echo "$out" | awk '/requests in/ { print $1 }')"
  local rps; rps="$(echo "$out" | awk '/Requests\/sec/ { print $2 }')"
  awk -v l="$label" -v t="$((after - before))" -v r="$reqs" -v hz="$tck" -v rps="$rps" \
    'BEGIN { printf "%-44s %9s req/s  %6.1f µs CPU per request (all nodes involved)\n", l, rps, t / hz / r * 1e6 }'
}
for round in 1 2 3; do
  run "local hit (owner, node 1)" "http://127.0.0.1:${ports[1]}$owner_key" "${pids[1]}"
  run "peer fetch (node 0 -> owner node 1, hit)" "http://127.0.0.1:${ports[0]}$owner_key" "${pids[0]}" "${pids[1]}"
done

echo "== Purge propagation: a URL purge on node 0 until all three applied it =="
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
redis_pid="$!"
wait_port "$redis_port"
start_fleet false 5s "$redis_port"
for i in 0 1 2; do
  for _ in $(seq 100); do [ "$(metric "${admin[$i]}" palisade_cluster_purge_stream_up)" = 1 ] && break; sleep 0.1; done
done
for n in $(seq 20); do
  for i in 0 1 2; do curl -s -o /dev/null -H "Host: fleet.example" "http://127.0.0.1:${ports[$i]}/p/$n"; done
  curl -s -o "$work/purge.json" -w '%{time_total}\n' -H "Authorization: Bearer bench-admin-token-0123456789" \
    -H "Content-Type: application/json" -d "{\"url\": \"http://fleet.example/p/$n\"}" \
    "http://127.0.0.1:${admin[0]}/cache/purge" >> "$work/purge.times"
  grep -q '"nodes_applied":3' "$work/purge.json" || { echo "not applied everywhere: $(cat "$work/purge.json")" >&2; exit 1; }
done
sort -n "$work/purge.times" | awk '{ t[NR] = $1 * 1000 } END {
  printf "20 purges, each applied by 3 of 3 nodes: median %.1f ms, max %.1f ms (answer time)\n", t[int((NR + 1) / 2)], t[NR] }'
