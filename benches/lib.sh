# Shared helpers of the benches/*.sh drivers (sourced, not run).

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 10 s) until something accepts on 127.0.0.1:$1.
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# User + system CPU ticks a process has used (divide deltas by getconf CLK_TCK).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Writes DIR/nginx.conf for a one-worker nginx origin on PORT answering every
# path with "backend NAME" and an `X-Backend: NAME` header, and /healthz.
#   static_origin NAME PORT DIR
static_origin() {
  local name="$1" port="$2" dir="$3"
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { add_header X-Backend $name; return 200 "backend $name\n"; }
    location = /healthz { return 200 "ok\n"; }
  }
}
CONF
}

# Stops the processes with these pids at once and reaps them.
kill_pids() {
  local p
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# Stops the nginx whose pid file is in DIR at once. Its master respawns a
# killed worker, and workers do not name the prefix on their command line:
# note the workers, kill the master, then them.
kill_nginx() {
  local master workers
  [ -f "$1/nginx.pid" ] || return 0
  master="$(cat "$1/nginx.pid")"
  workers="$(pgrep -P "$master" || true)"
  kill -9 "$master" 2>/dev/null || true
  [ -z "$workers" ] || kill -9 $workers 2>/dev/null || true
}

# The head of a one-worker bench config: the server settings (pid file and
# upgrade socket under DIR), a plain listener on PORT and the upstream
# `origin` at ORIGIN_PORT. Callers append `cache:` and `routes:`.
#   palisade_head DIR PORT ORIGIN_PORT   (LEAN_FORWARDING=false: Pingora's
#   proxy path for every request, for an A/B of the lean forward path)
palisade_head() {
  cat <<YAML
server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, pid_file: $1/p.pid, upgrade_socket: $1/u.sock, lean_forwarding: ${LEAN_FORWARDING:-true} }
logging: { level: warn }
listeners: [ { name: http, address: "127.0.0.1:$2" } ]
upstreams: { origin: { backends: ["127.0.0.1:$3"] } }
YAML
}
