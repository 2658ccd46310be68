#!/usr/bin/env bash
# Hot reload under load: two nginx origins (a, b), steady k6 traffic through
# Palisade, and RELOADS configuration reloads (SIGHUP) during the run, each
# switching the route between a and b, plus one invalid file in the middle
# that must be refused while traffic continues. k6's thresholds require zero
# failed requests; the script then checks the reload counters on /metrics.
#
#   benches/reload.sh [DURATION] [RELOADS]     (default 40s, 20)
#
# Needs `scripts/setup --bench` (nginx, k6) and builds the release binary.
# Loopback only; ports are picked free at start.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

duration_s="${1:-40s}"
duration_s="${duration_s%s}"
reloads="${2:-20}"
work="$(mktemp -d /tmp/palisade-reload.XXXXXX)"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  for n in a b; do kill_nginx "$work/$n"; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin palisade

declare -A port
for n in a b; do
  port[$n]="$(free_port)"
  static_origin "$n" "${port[$n]}" "$work/$n"
  nginx -q -p "$work/$n" -c "$work/$n/nginx.conf"
  wait_port "${port[$n]}"
done

proxy_port="$(free_port)"
admin_port="$(free_port)"
token="reload-bench-token-0123456789"
cat > "$work/palisade.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s }
logging: { level: info }
listeners: [{ name: bench, address: 127.0.0.1:$proxy_port }]
admin: { address: 127.0.0.1:$admin_port, token: $token }
upstreams:
  a: { backends: [127.0.0.1:${port[a]}] }
  b: { backends: [127.0.0.1:${port[b]}] }
routes:
  - name: main
    upstream: a
CONF
./target/release/palisade run -c "$work/palisade.yaml" 2> "$work/palisade.log" &
pids+=("$!")
proxy_pid="$!"
wait_port "$proxy_port"

# Reloads spread over the middle of the run.
(
  interval="$(python3 -c "print(($duration_s * 0.8) / ($reloads + 1))")"
  sleep "$(python3 -c "print($duration_s * 0.1)")"
  for i in $(seq "$reloads"); do
    if grep -q "upstream: a" "$work/palisade.yaml"; then
      sed -i 's/upstream: a$/upstream: b/' "$work/palisade.yaml"
    else
      sed -i 's/upstream: b$/upstream: a/' "$work/palisade.yaml"
    fi
    kill -HUP "$proxy_pid"
    sleep "$interval"
    if [ "$i" = "$((reloads / 2))" ]; then
      cp "$work/palisade.yaml" "$work/good.yaml"
      sed -i 's/upstream: \([ab]\)$/upstream: nowhere/' "$work/palisade.yaml"
      kill -HUP "$proxy_pid"
      sleep 0.2
      cp "$work/good.yaml" "$work/palisade.yaml"
    fi
  done
) &
pids+=("$!")

status=0
k6 run --quiet -e "TARGET=http://127.0.0.1:$proxy_port/" -e "DURATION=${duration_s}s" \
  benches/k6/reload.js || status=$?
wait "${pids[1]}" 2>/dev/null || true

echo
echo "reload counters (palisade /metrics):"
curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$admin_port/metrics" \
  | grep -E '^palisade_config_reloads_total' | sed 's/^/  /'
echo "reload log lines:"
grep -cE "configuration reloaded" "$work/palisade.log" | sed 's/^/  applied: /'
grep -cE "configuration reload refused" "$work/palisade.log" | sed 's/^/  refused: /'
kill -TERM "$proxy_pid" 2>/dev/null || true
exit "$status"
