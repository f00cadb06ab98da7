# Sourced by bench/http.sh and bench/memory.sh: the pieces both start the same way (the
# release build, nginx as a plain reverse proxy, Custos's configuration, the session
# records in Redis, the audit directory on a real disk). Never run by CI.

# need TOOL...: stop, naming the tool, when one is missing.
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$BENCH: $tool is missing (apt-get install -y wrk nginx-light redis-server python3 util-linux)" >&2; exit 1; }
  done
}

# The release build, once (BENCH_BUILT=1: already done by the caller).
build_release() {
  [ -n "${BENCH_BUILT:-}" ] && return 0
  cargo build --release --quiet --bin custos --bin demo-ephi
}

# bench/bare-pingora, built like Custos, in its own target directory.
build_bare() {
  CARGO_TARGET_DIR="$PWD/target/bench" cargo build --release --quiet --manifest-path bench/bare-pingora/Cargo.toml
}

# nginx_conf DIR LISTEN UPSTREAM CLIENTS: nginx as a plain reverse proxy, one worker,
# upstream keep-alive; room for CLIENTS client connections beside the upstream ones (when
# its connections run out, nginx closes idle keep-alive ones), and a client keep-alive
# long enough for memory.sh's idle connections to stay open.
nginx_conf() {
  local dir=$1 listen=$2 up=$3 conns=$4
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile $((conns + 2048));
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections $((conns + 1024)); }
http {
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream demo { server $up; keepalive 256; }
  server {
    listen $listen;
    location / { proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
}

# custos_conf FILE ADDR AUDIT AUTH POLICY [EXTRA_TOML]: a Custos configuration with one
# thread and one route to $UP.
#   AUDIT  off, or the directory of a durable audit trail (on)
#   AUTH   none (a public passthrough route), session (a signed-in route: the cookie
#          session in the Redis at $REDIS_PORT; the provider is never called, so its
#          address is a closed port) or bearer (RFC 9068 access tokens from the provider
#          at $IDP_PORT)
#   POLICY none, or the directory holding policy-model.conf and policy.csv (the route
#          is then resource "ehr" in domain "cardiology")
# EXTRA_TOML is written right after [session] (AUTH none: after [audit]), before the
# route: bare keys land in that table, then any top-level table such as [limits].
custos_conf() {
  local file=$1 addr=$2 audit=$3 auth=$4 policy=$5 extra=${6:-}
  {
    printf '[server]\nthreads = 1\n[listen]\nhttp = "%s"\n[log]\nlevel = "warn"\n' "$addr"
    if [ "$audit" = off ]; then
      printf '[audit]\nenabled = false\ndir = "%s"\n' "$OUT/audit-off"
    else
      printf '[audit]\nenabled = true\ndir = "%s"\n' "$audit"
    fi
    if [ "$auth" != none ]; then
      echo bench-secret >"$OUT/client-secret"
      printf '[oidc]\nclient_id = "bench"\nclient_secret = { file = "%s" }\nredirect_url = "http://%s/.custos/callback"\n' "$OUT/client-secret" "$addr"
      if [ "$auth" = bearer ]; then
        printf 'issuer = "http://127.0.0.1:%s"\napi_audience = "urn:custos:api"\n' "$IDP_PORT"
      else
        printf 'issuer = "http://127.0.0.1:9"\n'
      fi
      printf '[session]\nredis_url = "redis://127.0.0.1:%s/"\nkey_prefix = "custos-bench"\nidle_timeout_secs = 3600\n' "$REDIS_PORT"
    fi
    printf '%s\n' "$extra"
    printf '[[routes]]\nupstream = "http://%s"\n' "$UP"
    if [ "$auth" = none ]; then printf 'name = "passthrough"\npublic = true\n'; else printf 'name = "signed-in"\n'; fi
    if [ "$policy" != none ]; then
      printf 'resource = "ehr"\ndomain = "cardiology"\n[policy]\nmodel = "%s/policy-model.conf"\npolicy = "%s/policy.csv"\n' "$policy" "$policy"
    fi
  } >"$file"
}

# policy_files DIR: the example HIPAA model and policy, with the rule that allows the
# benchmark's request (GET /plain) appended last, so the evaluator reads all the others.
policy_files() {
  cp policies/hipaa_model.conf "$1/policy-model.conf"
  { cat policies/hipaa_policy.csv; echo "p, physician, cardiology, ehr:/plain, GET, allow"; } >"$1/policy.csv"
}

# seed_sessions N COOKIES_FILE: N distinct signed-in sessions written into the Redis at
# $REDIS_PORT the way the gateway writes them (the key is the SHA-256 of the cookie value;
# member of `clinicians`, signed in with MFA), and their cookies, one `Cookie:` header a
# line, into COOKIES_FILE.
seed_sessions() {
  python3 - "$1" "$2" <<'PY' | redis-cli -p "$REDIS_PORT" --pipe >/dev/null
import hashlib, json, secrets, sys, time
n, cookies = int(sys.argv[1]), sys.argv[2]
now = int(time.time())
out = sys.stdout.buffer
with open(cookies, "w") as f:
    for i in range(n):
        sid = secrets.token_hex(32)
        f.write(f"Cookie: custos_session={sid}\n")
        key = "custos-bench:s:" + hashlib.sha256(sid.encode()).hexdigest()
        rec = json.dumps({"subject": f"bench-{i}", "groups": ["clinicians"], "amr": ["pwd", "otp"],
                          "acr": "urn:custos:mfa", "created": now, "last_seen": now}, separators=(",", ":"))
        args = [b"SET", key.encode(), rec.encode(), b"EX", b"3600"]
        out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
PY
}

# start_redis CPUS: a Redis with nothing persisted, and wait for it.
start_redis() {
  taskset -c "$1" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 & pids+=($!)
  REDIS_PID=$!
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$BENCH: redis-server did not start" >&2; exit 1
}

# wait_ok NAME URL [HEADER]: wait until URL answers 200, or stop naming NAME.
wait_ok() {
  local h=()
  [ -n "${3:-}" ] && h=(-H "$3")
  for _ in $(seq 50); do curl -fs "${h[@]}" "$2" >/dev/null && return 0; sleep 0.1; done
  echo "$BENCH: the $1 target ($2) is not answering 200" >&2; exit 1
}

# audit_base: the directory under which audit trails are written: $BENCH_AUDIT_DIR, or
# target/bench-audit in the repository; refused on tmpfs, where fdatasync costs nothing.
audit_base() {
  local base=${BENCH_AUDIT_DIR:-$PWD/target/bench-audit} fs
  mkdir -p "$base"
  fs=$(stat -f -c %T "$base")
  case $fs in
    tmpfs|ramfs) echo "$BENCH: the audit directory $base is on $fs; fdatasync costs nothing there. Set BENCH_AUDIT_DIR to a directory on a real disk." >&2; exit 1 ;;
  esac
  echo "$base"
}
