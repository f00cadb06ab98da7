#!/usr/bin/env bash
# PostgreSQL benchmark: pgbench select-only through each target, against one PostgreSQL.
# Targets:
#   direct     PostgreSQL itself (plaintext)
#   pgb-sess   PgBouncer (Debian's) in session mode (plaintext)
#   pgb-txn    the same in transaction mode
#   custos     Custos's PostgreSQL listener (plaintext: `[postgres] allow_plaintext = true`
#              on loopback), the durable audit trail on: every statement parsed with
#              pg_query, its decision record fsynced before it is forwarded, its
#              completion record after; the password an OIDC access token
#   custos-tls the same over TLS (`sslmode=require`)
# Load: `pgbench -n -S -j 2 -T $DUR` at each of $CLIENTS with each of $MODES (-M simple,
# extended, prepared), each target in turn (interleaved), the whole matrix $RUNS times.
#
#   bench/postgres.sh                  (needs: apt-get install -y postgresql postgresql-client pgbouncer redis-server python3 nodejs npm curl)
#   DUR=2 RUNS=1 CLIENTS=8 MODES=simple ONLY="direct custos" bench/postgres.sh
#
# It does not flatter: a run with failed transactions or a pgbench error fails naming its
# target (but for PgBouncer's transaction mode with -M prepared, which Debian's 1.18 is
# known to break: that is reported, not fatal); Custos's statements are counted in its
# audit trail (at least one decision and one completion record per pgbench transaction,
# else the run fails); the trail is written on a real disk (target/bench-audit or
# $BENCH_AUDIT_DIR, never tmpfs) and verified at the end; PostgreSQL runs with fsync on.
#
# Prints TPS and average latency per run, the means, the ratios per client count, the
# CPU each proxy spent per transaction (utime + stime from /proc), and, from Custos's
# completion records, the median (and p99) statement duration and audit phase (the
# decision record made durable). Never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=bench/postgres.sh
. bench/common.sh
need pgbench psql pgbouncer redis-server redis-cli python3 node npm curl setpriv

DUR=${DUR:-10}
CLIENTS=${CLIENTS:-8 32}
MODES=${MODES:-simple extended prepared}
RUNS=${RUNS:-2}
SCALE=${SCALE:-10}
# Custos's `server.threads` (its PostgreSQL runtime's workers); PgBouncer is one thread.
THREADS=${THREADS:-1}
POOL=${POOL:-40}
TARGETS=(direct pgb-sess pgb-txn custos custos-tls)
[ -n "${ONLY:-}" ] && read -ra TARGETS <<<"$ONLY"
PG_PORT=19100 SESS_PORT=19101 TXN_PORT=19102 CUS_PORT=19103 HTTP_PORT=19104 TLS_PORT=19105
REDIS_PORT=19106 IDP_PORT=19107
IDP=http://127.0.0.1:$IDP_PORT
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/postgres" ] || { echo "$BENCH: no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install -y postgresql)" >&2; exit 1; }

# patient NAME URL SECS: wait_ok with up to SECS seconds (node and a loaded machine start slowly).
patient() {
  for _ in $(seq $(($3 * 5))); do curl -fs "$2" >/dev/null && break; sleep 0.2; done
  wait_ok "$1" "$2"
}

# PostgreSQL and PgBouncer refuse root: as root they run as the `postgres` system user
# (setpriv execs the program, so a background job's pid is the program's own).
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(setpriv --reuid postgres --regid postgres --init-groups --)

OUT=$(mktemp -d /tmp/custos-pgbench.XXXXXX)
# The server's own folder (data, socket, PgBouncer's files): the server's user owns it.
PGDIR=$(mktemp -d /tmp/custos-pgbench-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
AUDIT_BASE=$(audit_base)
AUDIT_RUN=$(mktemp -d "$AUDIT_BASE/pg.XXXXXX")
pids=()
PG_PID=
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # PostgreSQL: a fast shutdown. Its data (and PgBouncer's logs) go once all have exited.
  [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null
  for p in "${pids[@]}" $PG_PID; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$PGDIR"
  [ -n "${KEEP_AUDIT:-}" ] || rm -rf "$AUDIT_RUN"
}
trap cleanup EXIT
for d in "$PGDIR" "$AUDIT_RUN"; do
  case $(stat -f -c %T "$d") in tmpfs|ramfs) echo "$BENCH: $d is on tmpfs; fsync costs nothing there" >&2; exit 1 ;; esac
done

[ -n "${BENCH_BUILT:-}" ] || cargo build --release --quiet --bin custos

echo "== settings"
echo "DUR=${DUR}s CLIENTS=\"$CLIENTS\" MODES=\"$MODES\" RUNS=$RUNS SCALE=$SCALE pgbench -n -S -j 2; targets: ${TARGETS[*]}"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') ($PGBIN), data and WAL in $PGDIR ($(stat -f -c %T "$PGDIR")): fsync=on synchronous_commit=on max_connections=200 shared_buffers=128MB, scram-sha-256 over TCP"
echo "$(pgbouncer --version | head -1): pool_mode session / transaction, default_pool_size=$POOL max_client_conn=200 auth scram-sha-256"
echo "Custos $(git rev-parse --short HEAD): target/release/custos, server.threads=$THREADS, durable audit in $AUDIT_RUN ($(stat -f -c %T "$AUDIT_RUN") on $(findmnt -n -o SOURCE -T "$AUDIT_RUN")), upstream TLS off, databases.limits.max_connections_per_user=64"
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(uptime | sed 's/.*load/load/')"

# --- PostgreSQL, with pgbench's tables (scale $SCALE) owned by role `bench`.
PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDIR/data" --username=postgres --auth-local=trust --auth-host=scram-sha-256 \
  --encoding=UTF8 --no-locale >"$OUT/initdb.log" 2>&1 || { echo "$BENCH: initdb failed: see $OUT/initdb.log" >&2; exit 1; }
"${AS_PG[@]}" "$PGBIN/postgres" -D "$PGDIR/data" -c listen_addresses=127.0.0.1 -c port=$PG_PORT \
  -c unix_socket_directories="$PGDIR" -c max_connections=200 -c shared_buffers=128MB \
  -c fsync=on -c synchronous_commit=on 2>"$OUT/postgres.log" &
PG_PID=$!
admin() { psql -X -q -t -v ON_ERROR_STOP=1 -h "$PGDIR" -p $PG_PORT -U postgres "$@"; }
for _ in $(seq 100); do admin -c 'SELECT 1' postgres >/dev/null 2>&1 && break; sleep 0.2; done
admin -c "CREATE ROLE bench LOGIN PASSWORD '$PG_PASSWORD'" -c 'CREATE DATABASE bench OWNER bench' postgres >/dev/null
pgbench -i -q -s "$SCALE" -h "$PGDIR" -p $PG_PORT -U bench bench >"$OUT/pgbench-init.log" 2>&1 ||
  { echo "$BENCH: pgbench -i failed: see $OUT/pgbench-init.log" >&2; exit 1; }

# --- PgBouncer, one process per pool mode, the server's password in its auth file.
printf '"bench" "%s"\n' "$PG_PASSWORD" >"$PGDIR/userlist.txt"
start_pgbouncer() {
  local mode=$1 port=$2 ini=$PGDIR/pgbouncer-$1.ini
  cat >"$ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGDIR/userlist.txt
pool_mode = $mode
default_pool_size = $POOL
max_client_conn = 200
logfile = $PGDIR/pgbouncer-$mode.log
log_connections = 0
log_disconnections = 0
INI
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$ini" "$PGDIR/userlist.txt"
  "${AS_PG[@]}" pgbouncer "$ini" >/dev/null 2>&1 & pids+=($!)
  PIDS[$3]=$!
}
declare -A PIDS=() PORT=() SSL=()
PORT[direct]=$PG_PORT PORT[pgb-sess]=$SESS_PORT PORT[pgb-txn]=$TXN_PORT PORT[custos]=$CUS_PORT PORT[custos-tls]=$CUS_PORT
start_pgbouncer session $SESS_PORT pgb-sess
start_pgbouncer transaction $TXN_PORT pgb-txn

# --- Redis (Custos's sessions), the test provider, and Custos.
wants() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
if wants custos || wants custos-tls; then
  start_redis "0-$(($(nproc) - 1))"
  [ -d tests/idp/node_modules/oidc-provider ] || (cd tests/idp && npm ci --omit=dev --no-audit --no-fund >/dev/null)
  (cd tests/idp && PORT=$IDP_PORT exec node server.mjs >"$OUT/idp.log" 2>&1) & pids+=($!)
  patient provider "$IDP/.well-known/openid-configuration" 60
  REDIRECT=http://127.0.0.1:$HTTP_PORT/.custos/callback
  reg=$(curl -fs -X POST "$IDP/reg" -H 'content-type: application/json' -d "{\"client_name\":\"pgbench\",\"redirect_uris\":[\"$REDIRECT\"],\"response_types\":[\"code\"],\"grant_types\":[\"authorization_code\"],\"token_endpoint_auth_method\":\"client_secret_basic\",\"application_type\":\"web\"}")
  CLIENT_ID=$(jq -r .client_id <<<"$reg")
  jq -r .client_secret <<<"$reg" >"$OUT/client-secret"
  printf '%s' "$PG_PASSWORD" >"$OUT/pg-password"
  chmod 600 "$OUT/client-secret" "$OUT/pg-password"

  # follow URL STOP: redirects followed by hand, cookies kept in $OUT/cookies, until one
  # starts with STOP; prints it.
  follow() {
    local u=$1 next
    for _ in $(seq 10); do
      case $u in "$2"*) echo "$u"; return 0 ;; esac
      next=$(curl -s -b "$OUT/cookies" -c "$OUT/cookies" -o /dev/null -w '%{redirect_url}' "$u")
      [ -n "$next" ] || break
      u=$next
    done
    echo "$BENCH: the sign-in at the provider stopped at $u" >&2
    return 1
  }

  # access_token: alice signs in at the provider (password and one-time code: MFA) in a code
  # flow with PKCE, as tests/e2e/harness/idp.rs `tokens` does; prints her access token for
  # `urn:custos:api` (RS256 JWT, 600 s), which is her PostgreSQL password through Custos.
  access_token() {
    local jar=$OUT/cookies verifier=a-pkce-code-verifier-of-sufficient-length-0123456789 challenge url login code
    rm -f "$jar"
    challenge=$(printf '%s' "$verifier" | openssl dgst -sha256 -binary | basenc --base64url | tr -d '=')
    url="$IDP/auth?client_id=$CLIENT_ID&response_type=code&scope=openid&redirect_uri=$(jq -rn --arg u "$REDIRECT" '$u|@uri')&state=s1&nonce=n1&code_challenge=$challenge&code_challenge_method=S256"
    login=$(follow "$url" "$IDP/interaction/")
    curl -fs -b "$jar" -c "$jar" -o /dev/null "$login"
    url=$(curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{redirect_url}' --data-urlencode username=alice \
      --data-urlencode password=alice-password --data-urlencode otp=123456 "$login/login")
    code=$(follow "$url" "$REDIRECT" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')
    curl -fs -u "$CLIENT_ID:$(cat "$OUT/client-secret")" --data-urlencode grant_type=authorization_code \
      --data-urlencode "code=$code" --data-urlencode "redirect_uri=$REDIRECT" --data-urlencode "code_verifier=$verifier" \
      "$IDP/token" | jq -er .access_token
  }

  target/release/custos certs dev --out "$OUT/certs" >/dev/null
  cat >"$OUT/custos.toml" <<TOML
[server]
threads = $THREADS
[listen]
http = "127.0.0.1:$HTTP_PORT"
postgres = "127.0.0.1:$CUS_PORT"
tls = { addr = "127.0.0.1:$TLS_PORT", cert = "$OUT/certs/server.pem", key = { file = "$OUT/certs/server-key.pem" } }
[log]
level = "warn"
[audit]
enabled = true
dir = "$AUDIT_RUN/custos"
[oidc]
issuer = "$IDP"
client_id = "$CLIENT_ID"
client_secret = { file = "$OUT/client-secret" }
redirect_url = "$REDIRECT"
api_audience = "urn:custos:api"
[oidc.mfa]
acr = ["urn:custos:mfa"]
[session]
redis_url = "redis://127.0.0.1:$REDIS_PORT/"
key_prefix = "custos-pgbench"
[postgres]
allow_plaintext = true
[[routes]]
name = "app"
upstream = "http://127.0.0.1:9"
[[databases]]
name = "bench"
host = "127.0.0.1"
port = $PG_PORT
dbname = "bench"
password = { file = "$OUT/pg-password" }
require_mfa = true
[databases.tls]
mode = "disable"
[databases.roles]
readers = "bench"
[databases.limits]
max_connections_per_user = 64
max_connections = 100
TOML
  target/release/custos serve --config "$OUT/custos.toml" 2>"$OUT/custos.log" & pids+=($!)
  PIDS[custos]=$! PIDS[custos-tls]=$!
  patient custos "http://127.0.0.1:$HTTP_PORT/.custos/healthz" 60
  SSL[custos-tls]=require
fi

# pgbench_env TARGET: the user, database and password each target takes (Custos: alice
# with a fresh access token, so none expires during a run).
pgbench_env() {
  case $1 in
    custos*) PGUSER=alice PGDATABASE=bench PGPASSWORD=$(access_token) ;;
    *) PGUSER=bench PGDATABASE=bench PGPASSWORD=$PG_PASSWORD ;;
  esac
  PGSSLMODE=${SSL[$1]:-disable}
  export PGUSER PGDATABASE PGPASSWORD PGSSLMODE
}
for t in "${TARGETS[@]}"; do
  [ -n "${PORT[$t]:-}" ] || { echo "$BENCH: no target named $t" >&2; exit 1; }
  pgbench_env "$t"
  psql -X -q -t -h 127.0.0.1 -p "${PORT[$t]}" -c 'SELECT count(*) FROM pgbench_branches' >/dev/null 2>"$OUT/check.err" ||
    { echo "$BENCH: target $t does not answer: $(head -3 "$OUT/check.err"); logs in $OUT" >&2; exit 1; }
done

# ticks PID: the process's CPU so far (utime + stime, clock ticks), every thread.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

declare -A TPS=() LAT=() TX=() CPU=() BROKEN=()
: >"$OUT/windows"
echo
echo "== runs"
printf '%-10s %-3s %-7s %-9s %12s %10s %6s\n' target run clients mode tps lat_ms load1
for run in $(seq "$RUNS"); do
  for c in $CLIENTS; do
    for m in $MODES; do
      for t in "${TARGETS[@]}"; do
        k="$t $c $m"
        pgbench_env "$t"
        before=0; [ -n "${PIDS[$t]:-}" ] && before=$(ticks "${PIDS[$t]}")
        load=$(cut -d' ' -f1 /proc/loadavg)
        start=$(date +%s.%N)
        rc=0
        pgbench -n -S -M "$m" -c "$c" -j 2 -T "$DUR" -h 127.0.0.1 -p "${PORT[$t]}" >"$OUT/run.out" 2>"$OUT/run.err" || rc=$?
        end=$(date +%s.%N)
        after=0; [ -n "${PIDS[$t]:-}" ] && after=$(ticks "${PIDS[$t]}")
        tx=$(awk '/number of transactions actually processed/ {print $NF}' "$OUT/run.out")
        failed=$(awk '/number of failed transactions/ {print $5}' "$OUT/run.out")
        tps=$(awk '$1=="tps" {print $3}' "$OUT/run.out")
        lat=$(awk '/latency average/ {print $4}' "$OUT/run.out")
        if [ "$rc" -ne 0 ] || [ "${failed:-1}" != 0 ] || [ -z "$tps" ] || [ "${tx:-0}" -eq 0 ]; then
          why=$(grep -m1 -E 'error|ERROR|FATAL' "$OUT/run.err" || head -1 "$OUT/run.err")
          if [ "$t" = pgb-txn ] && [ "$m" = prepared ]; then
            BROKEN[$k]=$why
            printf '%-10s %-3s %-7s %-9s %12s   %s\n' "$t" "$run" "$c" "$m" broken "$why"
            continue
          fi
          echo "$BENCH: target $t (run $run, $c clients, -M $m) failed (exit $rc, failed transactions ${failed:-?}): $why; logs in $OUT" >&2
          exit 1
        fi
        printf '%-10s %-3s %-7s %-9s %12.0f %10s %6s\n' "$t" "$run" "$c" "$m" "$tps" "$lat" "$load"
        TPS[$k]="${TPS[$k]:-} $tps"; LAT[$k]="${LAT[$k]:-} $lat"; TX[$k]=$(( ${TX[$k]:-0} + tx ))
        CPU[$k]=$(( ${CPU[$k]:-0} + after - before ))
        case $t in custos*) echo "$t $c $m $run $start $end $tx" >>"$OUT/windows" ;; esac
      done
    done
  done
done

mean() { awk '{s=0; for(i=1;i<=NF;i++) s+=$i; if (NF) printf "%.3f", s/NF}' <<<"$1"; }
tck=$(getconf CLK_TCK)
echo
echo "== means (of $RUNS runs); cpu: the proxy's utime + stime per transaction, µs"
for c in $CLIENTS; do
  echo
  echo "$c clients:"
  printf '  %-10s %-9s %10s %9s %9s %10s %10s %10s\n' target mode tps lat_ms cpu_us "/direct" "/pgb-sess" "/pgb-txn"
  for m in $MODES; do
    for t in "${TARGETS[@]}"; do
      k="$t $c $m"
      if [ -n "${BROKEN[$k]:-}" ] && [ -z "${TPS[$k]:-}" ]; then
        printf '  %-10s %-9s %10s   %s\n' "$t" "$m" broken "${BROKEN[$k]}"
        continue
      fi
      [ -n "${TPS[$k]:-}" ] || continue
      tps=$(mean "${TPS[$k]}")
      cpu=-; [ -n "${PIDS[$t]:-}" ] && cpu=$(awk -v t="${CPU[$k]}" -v n="${TX[$k]}" -v h="$tck" 'BEGIN { printf "%.1f", t * 1e6 / h / n }')
      ratios=
      for b in direct pgb-sess pgb-txn; do
        r=-
        [ -n "${TPS[$b $c $m]:-}" ] && r=$(awk -v a="$tps" -v b="$(mean "${TPS[$b $c $m]}")" 'BEGIN { printf "%.2fx", a / b }')
        ratios+=$(printf ' %10s' "$r")
      done
      printf '  %-10s %-9s %10.0f %9.3f %9s%s\n' "$t" "$m" "$tps" "$(mean "${LAT[$k]}")" "$cpu" "$ratios"
    done
  done
done
if [ ${#BROKEN[@]} -gt 0 ]; then
  echo
  for k in "${!BROKEN[@]}"; do echo "broken: $k: ${BROKEN[$k]}"; done | sort -u
fi

# Where a Custos statement's time goes, from its completion records: the whole statement
# (from its decision to its CommandComplete: the decision record made durable, then
# forwarding and the server's answer) and the audit phase; the parse comes before and
# is not in the records. Also: records per pgbench transaction (at least one each).
if [ -s "$OUT/windows" ]; then
  echo
  echo "== Custos's completion records (verb select), per run: median / p99 ms"
  python3 - "$AUDIT_RUN/custos" "$OUT/windows" <<'PY'
import datetime, glob, json, os, statistics, sys
trail, windows = sys.argv[1], sys.argv[2]
wins = []
for line in open(windows):
    t, c, m, run, start, end, tx = line.split()
    wins.append(dict(label=f"{t} {c} {m} run {run}", start=float(start), end=float(end), tx=int(tx), dur=[], audit=[], dec=0))
# A connection belongs to the run its connect decision falls in; its statements' records
# follow it (a completion may be stamped after pgbench has exited).
conn = {}
for path in sorted(glob.glob(os.path.join(trail, "*.jsonl"))):
    for line in open(path, encoding="utf-8"):
        ev = json.loads(line)["event"]
        kind, verb, cid = ev["kind"], ev.get("verb"), ev.get("connection")
        if verb == "connect" and kind == "access.decision":
            ts = datetime.datetime.fromisoformat(ev["time"].replace("Z", "+00:00")).timestamp()
            conn[cid] = next((w for w in wins if w["start"] <= ts <= w["end"]), None)
            continue
        w = conn.get(cid)
        if w is None or verb != "select":
            continue
        if kind == "access.decision":
            w["dec"] += 1
        elif kind == "access.completed" and ev.get("sqlstate") == "00000":
            w["dur"].append(ev["duration_ms"])
            w["audit"] += [p["duration_ms"] for p in ev.get("phases", []) if p["name"] == "audit"]
def q(xs, f):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else float("nan")
print(f"  {'run':<28} {'transactions':>12} {'decisions':>10} {'completions':>11} {'statement':>17} {'audit phase':>17}")
bad = []
for w in wins:
    d, a = w["dur"], w["audit"]
    print(f"  {w['label']:<28} {w['tx']:>12} {w['dec']:>10} {len(d):>11} {statistics.median(d) if d else float('nan'):>8.3f} / {q(d, .99):<6.3f} {statistics.median(a) if a else float('nan'):>8.3f} / {q(a, .99):<6.3f}")
    if w["dec"] < w["tx"] or len(d) < w["tx"] or len(a) < len(d):
        bad.append(w["label"])
if bad:
    sys.exit(f"bench/postgres.sh: fewer records than transactions (or completions without an audit phase) in: {', '.join(bad)}")
PY
  target/release/custos audit verify "$AUDIT_RUN/custos" >"$OUT/verify.txt"
  echo "audit trail: $(head -1 "$OUT/verify.txt")"
fi
# CALLGRIND=1: where a statement's instructions go. Custos again, under callgrind, with
# collection on only while pgbench runs ($CG_CLIENTS clients, $CG_TX transactions each, per
# mode); instructions per statement in all, in pg_query's three parses (the C parser's
# entry points: the parse tree, the summary of objects, the fingerprint), and in making
# the decision record durable (the proxy's side; the writer's fsync is the kernel's).
if [ -n "${CALLGRIND:-}" ]; then
  need valgrind callgrind_control callgrind_annotate
  kill "${PIDS[custos]}"
  for _ in $(seq 100); do kill -0 "${PIDS[custos]}" 2>/dev/null || break; sleep 0.1; done
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
    target/release/custos serve --config "$OUT/custos.toml" 2>"$OUT/custos-callgrind.log" & pids+=($!)
  CG_PID=$!
  patient "custos under callgrind" "http://127.0.0.1:$HTTP_PORT/.custos/healthz" 300
  CG_CLIENTS=${CG_CLIENTS:-2} CG_TX=${CG_TX:-2000}
  echo
  echo "== callgrind: instructions per statement ($CG_CLIENTS clients x $CG_TX transactions, connection set-up included in 'all')"
  printf '  %-9s %12s %12s %12s %12s %12s\n' mode all classify parse summary fingerprint
  for m in $MODES; do
    pgbench_env custos
    callgrind_control -i on "$CG_PID" >/dev/null 2>&1
    pgbench -n -S -M "$m" -c "$CG_CLIENTS" -j 2 -t "$CG_TX" -h 127.0.0.1 -p $CUS_PORT >"$OUT/cg-run.out" 2>&1 ||
      { echo "$BENCH: pgbench under callgrind (-M $m) failed: see $OUT/cg-run.out" >&2; exit 1; }
    callgrind_control -i off "$CG_PID" >/dev/null 2>&1
    rm -f "$OUT"/callgrind.out.*
    callgrind_control -d "$m" "$CG_PID" >/dev/null 2>&1
    sleep 1
    f=$(ls -t "$OUT"/callgrind.out* | head -1)
    n=$((CG_CLIENTS * CG_TX))
    callgrind_annotate --inclusive=yes --threshold=100 "$f" >"$OUT/cg-$m.txt"
    # ir PATTERN: the inclusive instructions of the first function matching PATTERN.
    ir() { awk -v p="$1" 'index($0, p) { gsub(",", "", $1); print $1; exit }' "$OUT/cg-$m.txt"; }
    all=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$OUT/cg-$m.txt")
    printf '  %-9s' "$m"
    for v in "$all" "$(ir relay::ClientSide::classify)" "$(ir pg_query_parse_protobuf_opts)" "$(ir 'pg_query_summary ')" "$(ir pg_query_fingerprint_with_opts)"; do
      awk -v v="${v:-0}" -v n="$n" 'BEGIN { printf " %12.0f", v / n }'
    done
    echo
  done
  echo "  (annotations in $OUT/cg-*.txt)"
fi
echo "end: $(uptime | sed 's/.*load/load/'); logs in $OUT"
