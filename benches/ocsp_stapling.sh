#!/usr/bin/env bash
# What OCSP stapling (tls.ocsp_stapling) costs a handshake: Palisade with
# stapling on and off, same certificate (a test CA's ECDSA P-256 leaf
# naming a local `openssl ocsp` responder), one worker pinned to CPU 0.
#
#   benches/ocsp_stapling.sh [SECONDS]     (default 10 per run)
#
# Runs, alternated on/off, three times each:
#  - k6 with a new connection per request (benches/k6/tls.js MODE=handshake):
#    Go's TLS client asks for certificate status, so with stapling on every
#    handshake carries the ~0.5 KiB response;
#  - wrk with `Connection: close`: a client that does not ask (the cost of
#    remembering the chosen certificate for the status callback).
# Prints req/s and the proxy's CPU time per request, and how many
# handshakes were stapled. Needs scripts/setup --bench; builds the release
# binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

secs="${1:-10}"
work="$(mktemp -d /tmp/palisade-ocsp.XXXXXX)"
pids=()
cleanup() {
  kill_pids "${pids[@]}"
  [ -z "${responder:-}" ] || kill_pids "$responder"
  kill_nginx "$work/origin"
  rm -rf "$work"
}
trap cleanup EXIT
hz="$(getconf CLK_TCK)"
cargo build --release --quiet --bin palisade

# A CA, a leaf naming the responder, the responder.
ocsp_port="$(free_port)"
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
  -subj "/CN=Bench OCSP CA" -days 2 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout site.key -out site.csr \
  -subj "/CN=example.com" 2>/dev/null
printf 'subjectAltName=DNS:example.com\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:%s/\n' "$ocsp_port" > ext
openssl x509 -req -in site.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out leaf.crt -days 1 -extfile ext 2>/dev/null
cat leaf.crt ca.crt > site.crt
printf 'V\t491231235959Z\t\t%s\tunknown\t/CN=example.com\n' "$(openssl x509 -in leaf.crt -noout -serial | cut -d= -f2)" > index
taskset -c 1 openssl ocsp -index index -port "$ocsp_port" -rsigner ca.crt -rkey ca.key -CA ca.crt -nmin 60 \
  -ignore_err > ocsp.out 2>&1 &
responder="$!"
for _ in $(seq 100); do grep -q ACCEPT ocsp.out && break; sleep 0.05; done
cd - >/dev/null

origin_port="$(free_port)"
mkdir -p "$work/origin"
chmod 755 "$work" "$work/origin"
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/origin/1k"
chmod 644 "$work/origin/1k"
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/origin/nginx.pid; error_log $work/origin/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; root $work/origin;
    location / { add_header Cache-Control "public, max-age=3600"; } } }
CONF
taskset -c 1 nginx -q -p "$work/origin" -c "$work/origin/nginx.conf"

start() { # start on|off -> port
  local stapling=true port admin
  [ "$1" = off ] && stapling=false
  port="$(free_port)"; admin="$(free_port)"
  cat > "$work/palisade-$1.yaml" <<CONF
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p-$1.pid, upgrade_socket: $work/p-$1.sock }
logging: { level: warn }
admin: { address: "127.0.0.1:$admin", token: bench-admin-token-0123456789 }
listeners:
  - name: https
    address: 127.0.0.1:$port
    tls: { certificates: [{ cert: $work/site.crt, key: $work/site.key }], ocsp_stapling: $stapling }
upstreams: { origin: { backends: [127.0.0.1:$origin_port] } }
cache: { policies: { default: {} } }
routes: [{ upstream: origin, cache: default }]
CONF
  taskset -c 0 ./target/release/palisade run -c "$work/palisade-$1.yaml" 2>"$work/palisade-$1.log" &
  wait_port "$port"
  echo "$port $admin $!"
}
stapled() { # admin port
  curl -s -H "Authorization: Bearer bench-admin-token-0123456789" "http://127.0.0.1:$1/metrics" \
    | awk '$1 == "palisade_tls_ocsp_stapled_total" { print $2 }'
}

read -r on_port on_admin on_pid < <(start on)
read -r off_port off_admin off_pid < <(start off)
pids+=("$on_pid" "$off_pid")
# Wait until the stapling instance holds a response.
for _ in $(seq 200); do
  echo | openssl s_client -connect "127.0.0.1:$on_port" -servername example.com -status 2>/dev/null \
    | grep -q 'OCSP Response Status: successful' && break
  sleep 0.05
done
for p in "$on_port" "$off_port"; do curl -sk -o /dev/null "https://127.0.0.1:$p/1k"; done

measure() { # label pid tool...
  local label="$1" pid="$2"; shift 2
  local before after out reqs
  before="$(cpu_ticks "$pid")"
  out="$("$@" 2>&1)"
  after="$(cpu_ticks "$pid")"
  if [ "${4:-}" = wrk ]; then
    reqs="$(awk '/requests in/ { print $1 }' <<<"$out")"
  else
    reqs="$(awk '/http_reqs/ { print $2; exit }' <<<"$out")"
  fi
  awk -v l="$label" -v t=$((after - before)) -v r="$reqs" -v hz="$hz" -v s="$secs" \
    'BEGIN { printf "%-52s %8.0f req/s  %6.1f µs CPU per request\n", l, r / s, t / hz / r * 1e6 }'
}

echo "OCSP stapling, ${secs}s per run, proxy on CPU 0, clients on CPU 1"
for round in 1 2 3; do
  for mode in on off; do
    port=$on_port; pid=$on_pid; [ "$mode" = off ] && { port=$off_port; pid=$off_pid; }
    measure "k6 new connection per request, stapling $mode" "$pid" \
      taskset -c 1 k6 run -q -e TARGET="https://127.0.0.1:$port/1k" -e MODE=handshake -e VUS=16 \
      -e DURATION="${secs}s" benches/k6/tls.js
    measure "wrk Connection: close (no status asked), stapling $mode" "$pid" \
      taskset -c 1 wrk -t1 -c16 -d"${secs}s" -H "Connection: close" "https://127.0.0.1:$port/1k"
  done
done
echo "handshakes stapled: on $(stapled "$on_admin"), off $(stapled "$off_admin")"
