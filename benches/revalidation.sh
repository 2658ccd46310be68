#!/usr/bin/env bash
# Bursts of concurrent requests for responses that must be revalidated on
# every use — `max-age=0`, `no-cache`, `max-age=0, must-revalidate` (each
# with an ETag), and a file written just now (only `Last-Modified`, so its
# heuristic freshness is ~0) — from an origin that takes 50 ms per response
# (header and body in one write). For each, VUS (default 200) clients ask at
# once (benches/k6/herd.js); reported: p50 / p99 / max latency and how many
# requests reached the origin, through Palisade and against the origin
# alone.
#
#   benches/revalidation.sh
#
# Environment: PALISADE_BIN (a prebuilt binary, e.g. an older build to
# compare), VUS, ROUNDS (bursts per row, default 3; the table shows the
# median by p50). Needs `scripts/setup --bench` (k6). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

vus="${VUS:-200}"
rounds="${ROUNDS:-3}"
work="$(mktemp -d /tmp/palisade-revalidation.XXXXXX)"
pids=()
cleanup() { kill_pids "${pids[@]}"; rm -rf "$work"; }
trap cleanup EXIT

command -v k6 >/dev/null || { echo "revalidation: k6 not found (run scripts/setup --bench)" >&2; exit 1; }
palisade_bin="${PALISADE_BIN:-}"
if [ -z "$palisade_bin" ]; then
  cargo build --release --quiet --bin palisade
  palisade_bin=./target/release/palisade
fi

origin_port="$(free_port)"; proxy_port="$(free_port)"
cat > "$work/origin.py" <<'PY'
import email.utils, http.server, socketserver, sys, threading, time
COUNTS = {}
LOCK = threading.Lock()
ROWS = {
    "/max-age-0": "Cache-Control: max-age=0\r\n",
    "/no-cache": "Cache-Control: no-cache\r\n",
    "/must-revalidate": "Cache-Control: max-age=0, must-revalidate\r\n",
}
BODY = b"x" * 1024
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/count":
            with LOCK:
                out = str(sum(COUNTS.values())).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
            return
        with LOCK:
            COUNTS[path] = COUNTS.get(path, 0) + 1
        time.sleep(0.05)
        if path in ROWS:
            head = ROWS[path] + 'ETag: "v1"\r\n'
            if self.headers.get("If-None-Match") == '"v1"':
                self.wfile.write(("HTTP/1.1 304 Not Modified\r\n" + head + "\r\n").encode())
                return
        else:
            head = "Last-Modified: %s\r\n" % email.utils.formatdate(time.time(), usegmt=True)
        date = "Date: %s\r\n" % email.utils.formatdate(time.time(), usegmt=True)
        self.wfile.write(("HTTP/1.1 200 OK\r\n" + date + head + "Content-Length: 1024\r\n\r\n").encode() + BODY)
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 4096
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
python3 "$work/origin.py" "$origin_port" & pids+=($!)
wait_port "$origin_port"

cat > "$work/palisade.yaml" <<YAML
server: { threads: 2, grace_period: 0s, shutdown_timeout: 1s, pid_file: $work/p.pid, upgrade_socket: $work/u.sock }
logging: { level: warn }
listeners: [ { name: http, address: "127.0.0.1:$proxy_port" } ]
upstreams: { origin: { backends: ["127.0.0.1:$origin_port"] } }
cache: { policies: { default: {} } }
routes: [ { upstream: origin, cache: default } ]
YAML
"$palisade_bin" run -c "$work/palisade.yaml" > "$work/palisade.log" 2>&1 & pids+=($!)
wait_port "$proxy_port"

origin_count() { curl -s "http://127.0.0.1:$origin_port/count"; }

# One burst: prints "p50 p99 max origin_requests".
burst() {
  local url="$1" before after
  curl -s -o /dev/null "$url"   # stored (or, for the origin, warmed)
  before="$(origin_count)"
  k6 run -q --summary-export "$work/summary.json" -e TARGET="$url" -e VUS="$vus" \
    benches/k6/herd.js > "$work/k6.log" 2>&1 || { cat "$work/k6.log" >&2; }
  after="$(origin_count)"
  python3 - "$work/summary.json" "$((after - before))" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["metrics"]["http_req_duration"]
print("%.0f %.0f %.0f %s" % (d["p(50)"], d["p(99)"], d["max"], sys.argv[2]))
PY
}

printf '%-18s | %-34s | %-30s\n' "row ($vus at once)" "Palisade p50/p99/max ms, origin reqs" "origin alone p50/p99/max ms"
for row in /max-age-0 /no-cache /must-revalidate /just-written; do
  results=()
  for _ in $(seq "$rounds"); do
    results+=("$(burst "http://127.0.0.1:$proxy_port$row?r=$RANDOM")")
  done
  proxy="$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")"
  alone="$(burst "http://127.0.0.1:$origin_port$row")"
  read -r p50 p99 max reqs <<< "$proxy"
  read -r a50 a99 amax _ <<< "$alone"
  printf '%-18s | %5s / %5s / %5s, %4s origin reqs | %5s / %5s / %5s\n' "$row" "$p50" "$p99" "$max" "$reqs" "$a50" "$a99" "$amax"
done
