#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a repeatable A/B of two
# builds on a machine whose timings are noisy (CPU time per request from
# wrk varied 15-33 us between identical runs here; instruction counts do
# not depend on what else the machine does).
#
#   benches/instructions.sh BINARY [BINARY...]
#
# For each binary and each scenario, Palisade runs under
# `valgrind --tool=callgrind` with one worker thread; a keep-alive client
# sends N1 requests (warm-up; callgrind's counters are dumped and reset),
# then N2, and the instructions counted over those N2, divided by N2, are
# the cost of one request, start-up and warm-up excluded.
# Scenarios (SCENARIOS, default "hit1k pass miss"): a fresh 1 KiB hit, a
# `no-store` pass-through, a new cacheable key per request; `plain` is a
# pass-through on a route with no cache at all. N1/N2 default
# 500/2500. With PROFILE_DIR set, the measured dump of each run is kept
# there (`callgrind_annotate FILE` shows where the instructions go).
# A BINARY named thin_proxy* is the thin-Pingora yardstick
# (examples/thin_proxy.rs): every path is a pass-through there.
# Needs valgrind (scripts/setup --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh

[ "$#" -ge 1 ] || { sed -n '2,16p' "$0"; exit 2; }
command -v valgrind >/dev/null || { echo "instructions: valgrind not found (run scripts/setup --bench)" >&2; exit 1; }
n1="${N1:-500}"; n2="${N2:-2500}"
read -r -a scenarios <<<"${SCENARIOS:-hit1k pass miss}"
work="$(mktemp -d /tmp/palisade-instructions.XXXXXX)"
pids=()
cleanup() { kill_pids "${pids[@]}"; rm -rf "$work"; }
trap cleanup EXIT

origin_port="$(free_port)"
cat > "$work/origin.py" <<'PY'
import http.server, sys
BODY = b"x" * 1024
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        cc = "no-store" if "nostore" in self.path else "public, max-age=3600"
        self.wfile.write(b"HTTP/1.1 200 OK\r\nCache-Control: %s\r\nContent-Length: 1024\r\n\r\n" % cc.encode() + BODY)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
python3 "$work/origin.py" "$origin_port" & pids+=($!)
wait_port "$origin_port"

# send PORT PATH N: N requests on one kept-alive connection (PATH ending in
# `-` gets a counter appended: a new key each time).
cat > "$work/send.py" <<'PY'
import socket, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def connect():
    s = socket.create_connection(("127.0.0.1", port))
    return s, s.makefile("rb")
s, f = connect()
for i in range(n):
    target = path + str(i) if path.endswith("-") else path
    s.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % target.encode())
    length, close = 0, False
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        if lower.startswith(b"connection:") and b"close" in lower:
            close = True
    f.read(length)
    if close:
        # The server ends the connection (max requests per connection).
        s.close()
        s, f = connect()
PY

path_of() { case "$1" in hit1k) echo /cached/1k ;; pass) echo /nostore ;; miss) echo "/obj/$RANDOM-" ;; plain) echo /plain/nostore ;; esac; }

# Instructions since the previous dump of the callgrind run writing to $1.
ir_since_dump() {
  callgrind_control -d "$2" >/dev/null 2>&1
  sleep 0.5
  awk '/^summary:/ {s+=$2} /^totals:/ {t+=$2} END {print (s ? s : t)}' "$1".*
}

printf '%-28s %-8s %14s\n' binary scenario "instr/request"
for bin in "$@"; do
  for scenario in "${scenarios[@]}"; do
    port="$(free_port)"
    palisade_head "$work" "$port" "$origin_port" > "$work/palisade.yaml"
    cat >> "$work/palisade.yaml" <<YAML
cache: { policies: { default: {} } }
routes:
  - { match: { path_prefix: /plain }, upstream: origin }
  - { upstream: origin, cache: default }
YAML
    rm -f "$work"/cg.out*
    # Each dump names its functions in full when kept (a dump otherwise
    # refers to names defined in the earlier, discarded one).
    keep=()
    [ -z "${PROFILE_DIR:-}" ] || keep=(--compress-strings=no --compress-pos=no)
    # examples/thin_proxy (the thin-Pingora yardstick) takes two addresses.
    run=(run -c "$work/palisade.yaml")
    [[ "$(basename "$bin")" != thin_proxy* ]] || run=("127.0.0.1:$port" "127.0.0.1:$origin_port")
    valgrind --tool=callgrind "${keep[@]}" --callgrind-out-file="$work/cg.out" "$bin" "${run[@]}" \
      > "$work/valgrind.log" 2>&1 & pid=$!
    pids+=($pid)
    for _ in $(seq 1200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    path="$(path_of "$scenario")"
    python3 "$work/send.py" "$port" "$path" "$n1"
    rm -f "$work"/cg.out.*; ir_since_dump "$work/cg.out" "$pid" >/dev/null
    python3 "$work/send.py" "$port" "$path" "$n2"
    rm -f "$work"/cg.out.*; ir="$(ir_since_dump "$work/cg.out" "$pid")"
    if [ -n "${PROFILE_DIR:-}" ]; then
      mkdir -p "$PROFILE_DIR"
      for part in "$work"/cg.out.*; do
        cp "$part" "$PROFILE_DIR/$(basename "$bin").$scenario.$(basename "$part")"
      done
    fi
    kill_pids "$pid"
    printf '%-28s %-8s %14.0f\n' "$bin" "$scenario" "$(awk -v ir="$ir" -v n="$n2" 'BEGIN { print ir / n }')"
  done
done
