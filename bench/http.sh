#!/usr/bin/env bash
# HTTP benchmark, from a passthrough to the full stack. Targets:
#   direct   the demo upstream hit directly
#   nginx    nginx as a plain reverse proxy (one worker, upstream keep-alive)
#   pingora  bare pingora (bench/bare-pingora: the same framework and build, no filters)
#   custos   Custos on a public passthrough route, the audit trail off
#   audit    the same with the durable audit trail on (every request: a decision record
#            fsynced before forwarding, and a completion record)
#   auth     signed in, audit off: every request carries a session cookie (the session
#            read from Redis, judged, the MFA rule applied, the cookie stripped)
#   bearer   an RFC 9068 access token from the test provider (checked once, remembered)
#   policy   bearer plus the example HIPAA policy on every request
#   full     everything users run: cookie session + the example policy + the durable
#            audit trail
# wrk, 1 thread, 32 connections, 10 s, each target twice, interleaved, on CPU 0. The
# upstream and Redis run on CPU 1; each proxy (one worker, Custos `threads = 1`) runs on
# $PROXY_CPUS: 1 (beside the upstream; Custos's audit writer shares the proxy's core, the
# strict case) or 0,1 (its extra threads may run beside wrk). Unset: both layouts, one
# after the other, each a complete run whose ratios compare only within it.
#
#   bench/http.sh                       (needs: apt-get install -y wrk nginx-light redis-server python3 cmake)
#   PROXY_CPUS=1 DUR=2s ONLY="custos full" bench/http.sh
#
# The benchmark does not flatter: every target runs the same wrk script (bench/count.lua),
# which counts each status, and a run with any answer but 200 (or any socket error) fails
# naming its target; the signed-in targets (auth, full) cycle through $SESSIONS (1,000)
# distinct sessions; the audit trails are written on a real disk (target/bench-audit, or
# $BENCH_AUDIT_DIR), never tmpfs, and verified at the end.
#
# Prints req/s, p50 and p99 per run, the means, the ratios, and the CPU each process spent
# per request (utime + stime from /proc/<pid>/task/*/stat, per thread name for Custos,
# whole-process for the others). Never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=bench/http.sh
. bench/common.sh
need wrk nginx taskset redis-server redis-cli python3 node npm curl

if [ -z "${PROXY_CPUS:-}" ]; then
  build_release
  for layout in 1 0,1; do
    echo "=== PROXY_CPUS=$layout"
    PROXY_CPUS=$layout BENCH_BUILT=1 ./bench/http.sh
    echo
  done
  exit 0
fi

DUR=${DUR:-10s}
CONNS=${CONNS:-32}
SESSIONS=${SESSIONS:-1000}
OUT=$(mktemp -d /tmp/custos-bench.XXXXXX)
UP=127.0.0.1:19000 NGX=127.0.0.1:19001 CUS=127.0.0.1:19002 BARE=127.0.0.1:19003 AUD=127.0.0.1:19004
AUTH=127.0.0.1:19005 REDIS_PORT=19006 BEARER=127.0.0.1:19007 IDP_PORT=19008 POLICY=127.0.0.1:19009
FULL=127.0.0.1:19010
TARGETS=(direct nginx pingora custos audit auth bearer policy full)
# ONLY="custos full" measures a subset (the ratios then print only where both sides ran).
[ -n "${ONLY:-}" ] && read -ra TARGETS <<<"$ONLY"
wants() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

AUDIT_BASE=$(audit_base)
AUDIT_RUN=$(mktemp -d "$AUDIT_BASE/run.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP_AUDIT:-}" ] || rm -rf "$AUDIT_RUN"
}
trap cleanup EXIT
echo "PROXY_CPUS=$PROXY_CPUS DUR=$DUR CONNS=$CONNS sessions=$SESSIONS audit on $(stat -f -c %T "$AUDIT_RUN") ($(findmnt -n -o SOURCE -T "$AUDIT_RUN")): $AUDIT_RUN"

build_release
build_bare

# Each target: its address, the processes whose CPU is read (label:pid; label custos is
# read per thread) and the file of request headers bench/count.lua cycles through.
declare -A ADDR PROCS HDRS
: >"$OUT/none.hdr"
add_target() { ADDR[$1]=$2; PROCS[$1]="$3 upstream:$UP_PID"; HDRS[$1]=${4:-$OUT/none.hdr}; }

taskset -c 1 target/release/demo-ephi --listen "$UP" 2>"$OUT/demo.log" & pids+=($!)
UP_PID=$!
add_target direct "$UP" ""

if wants nginx; then
  nginx_conf "$OUT/nginx" "$NGX" "$UP" 4096
  taskset -c "$PROXY_CPUS" nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g 'daemon off;' & pids+=($!)
  NGX_PID=$!
  wait_ok nginx "http://$NGX/plain"
  # The master and its worker.
  add_target nginx "$NGX" "nginx:$NGX_PID $(pgrep -P "$NGX_PID" | sed 's/^/nginx:/' | tr '\n' ' ')"
fi
if wants pingora; then
  taskset -c "$PROXY_CPUS" target/bench/release/bare-pingora "$BARE" "$UP" 2>"$OUT/bare.log" & pids+=($!)
  add_target pingora "$BARE" "pingora:$!"
fi

# start_custos NAME ADDR AUDIT AUTH POLICY HEADERS_FILE
start_custos() {
  custos_conf "$OUT/$1.toml" "$2" "$3" "$4" "$5"
  taskset -c "$PROXY_CPUS" target/release/custos serve --config "$OUT/$1.toml" 2>"$OUT/$1.log" & pids+=($!)
  local procs="custos:$!"
  [ "$4" = session ] && procs+=" redis:$REDIS_PID"
  add_target "$1" "$2" "$procs" "${6:-}"
  wait_ok "$1" "http://$2/plain" "$(head -1 "${HDRS[$1]}")"
}

wants custos && start_custos custos "$CUS" off none none
wants audit && start_custos audit "$AUD" "$AUDIT_RUN/audit" none none

policy_files "$OUT"
if wants auth || wants full; then
  start_redis "${REDIS_CPUS:-1}"
  seed_sessions "$SESSIONS" "$OUT/cookies.hdr"
  [ "$(wc -l <"$OUT/cookies.hdr")" -ge "$SESSIONS" ] || { echo "$BENCH: the sessions were not written" >&2; exit 1; }
  wants auth && start_custos auth "$AUTH" off session none "$OUT/cookies.hdr"
  wants full && start_custos full "$FULL" "$AUDIT_RUN/full" session "$OUT" "$OUT/cookies.hdr"
fi

if wants bearer || wants policy; then
  # The test provider (tests/idp) on CPU 0 signs an RFC 9068 access token with its key;
  # the gateway fetches the keys once and checks the token (then remembered until it
  # expires), applies the MFA rule and sends the identity assertion upstream.
  [ -d tests/idp/node_modules/oidc-provider ] || (cd tests/idp && npm ci --omit=dev --no-audit --no-fund >/dev/null)
  # `exec`: the pid kept is the provider's own, so the cleanup stops it.
  (cd tests/idp && PORT=$IDP_PORT CUSTOS_IDP_TEST_SIGNER=1 exec taskset -c 0 node server.mjs >"$OUT/idp.log" 2>&1) & pids+=($!)
  wait_ok provider "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration"
  now=$(date +%s)
  TOKEN=$(curl -fs -X POST "http://127.0.0.1:$IDP_PORT/test/sign" -H 'content-type: application/json' \
    -d "{\"header\":{\"typ\":\"at+jwt\"},\"payload\":{\"iss\":\"http://127.0.0.1:$IDP_PORT\",\"aud\":\"urn:custos:api\",\"sub\":\"bench\",\"groups\":[\"clinicians\"],\"amr\":[\"pwd\",\"otp\"],\"iat\":$now,\"exp\":$((now + 3600))}}")
  echo "Authorization: Bearer $TOKEN" >"$OUT/bearer.hdr"
  wants bearer && start_custos bearer "$BEARER" off bearer none "$OUT/bearer.hdr"
  wants policy && start_custos policy "$POLICY" off bearer "$OUT" "$OUT/bearer.hdr"
fi
for t in "${TARGETS[@]}"; do
  [ -n "${ADDR[$t]:-}" ] || { echo "$BENCH: no target named $t" >&2; exit 1; }
  wait_ok "$t" "http://${ADDR[$t]}/plain" "$(head -1 "${HDRS[$t]}")"
done

# cpu_ticks LABEL:PID...: lines "label thread ticks" (utime + stime, in clock ticks): per
# thread for Custos, plus its process total; the process total ("total") for the others.
# A Custos thread is named by its name (`comm`), threads of one name summed: "custos" is
# every thread without a name of its own (pingora's workers: the proxy itself), apart from
# the main thread ("main"); "custos-audit" the audit writer.
cpu_ticks() {
  local spec label pid tid line
  for spec in "$@"; do
    label=${spec%%:*} pid=${spec#*:}
    { read -r line <"/proc/$pid/stat" && echo "$label total $line"; } 2>/dev/null || true
    [ "$label" = custos ] || continue
    for tid in $(ls "/proc/$pid/task" 2>/dev/null | sort -n); do
      { read -r line <"/proc/$pid/task/$tid/stat" && echo "$label $([ "$tid" = "$pid" ] && echo main || echo thread) $line"; } 2>/dev/null || true
    done
  done | awk '{
    s = $0; label = $1; kind = $2; sub(/^[^ ]+ [^ ]+ /, "", s)
    l = index(s, "("); r = 0
    for (i = length(s); i > l; i--) if (substr(s, i, 1) == ")") { r = i; break }
    name = kind == "thread" ? substr(s, l + 1, r - l - 1) : kind; gsub(/ /, "_", name)
    split(substr(s, r + 2), f, " "); t[label " " name] += f[12] + f[13]
  } END { for (k in t) print k, t[k] }'
}

# wrk prints latency with units; convert to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

declare -A RPS P50 P99 REQS CPU
printf '%-8s %-3s %12s %10s %10s\n' target run req/s p50_ms p99_ms
for run in 1 2; do
  for t in "${TARGETS[@]}"; do
    read -ra procs <<<"${PROCS[$t]}"
    cpu_ticks "${procs[@]}" >"$OUT/cpu.before"
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s bench/count.lua "http://${ADDR[$t]}/plain" -- "${HDRS[$t]}")
    cpu_ticks "${procs[@]}" >"$OUT/cpu.after"
    statuses=$(awk '$1=="statuses" {$1=""; print}' <<<"$out")
    reqs=$(awk '$1=="requests" {print $2}' <<<"$out")
    variants=$(awk '$1=="requests" {print $4}' <<<"$out")
    errors=$(awk '$1=="requests" {for (i=6;i<=NF;i++) {split($i,e,"="); if (e[2]>0) print $i}}' <<<"$out")
    if [ -z "$reqs" ] || [ "$reqs" -eq 0 ] || [ -n "$(tr ' ' '\n' <<<"$statuses" | grep -v '^$' | grep -v '^200=')" ] || [ -n "$errors" ]; then
      echo "$BENCH: target $t (run $run) failed: statuses$statuses, ${errors:-no socket errors}; logs in $OUT" >&2
      exit 1
    fi
    # The signed-in targets: every session in the cycle, each used at least once.
    if [ "${HDRS[$t]}" = "$OUT/cookies.hdr" ] && { [ "${variants:-0}" -lt "$SESSIONS" ] || [ "$reqs" -lt "$SESSIONS" ]; }; then
      echo "$BENCH: target $t (run $run) cycled $variants sessions in $reqs requests, not $SESSIONS" >&2
      exit 1
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
    printf '%-8s %-3s %12.0f %10s %10s\n' "$t" "$run" "$rps" "$p50" "$p99"
    RPS[$t]="${RPS[$t]:-} $rps"; P50[$t]="${P50[$t]:-} $p50"; P99[$t]="${P99[$t]:-} $p99"
    REQS[$t]=$(( ${REQS[$t]:-0} + reqs ))
    while read -r label name ticks; do
      CPU[$t $label $name]=$(( ${CPU[$t $label $name]:-0} + ticks ))
    done < <(awk 'NR == FNR {b[$1 " " $2] = $3; next} {print $1, $2, $3 - b[$1 " " $2]}' "$OUT/cpu.before" "$OUT/cpu.after")
  done
done
mean() { awk '{s=0; for(i=1;i<=NF;i++) s+=$i; printf "%.3f", s/NF}' <<<"$1"; }
echo
printf '%-8s %12s %10s %10s\n' target mean_req/s p50_ms p99_ms
for t in "${TARGETS[@]}"; do
  printf '%-8s %12.0f %10s %10s\n' "$t" "$(mean "${RPS[$t]}")" "$(mean "${P50[$t]}")" "$(mean "${P99[$t]}")"
done

# ratio LABEL A B: A's mean req/s over B's, where both ran.
ratio() {
  [ -n "${RPS[$2]:-}" ] && [ -n "${RPS[$3]:-}" ] || return 0
  awk -v l="$1" -v a="$(mean "${RPS[$2]}")" -v b="$(mean "${RPS[$3]}")" 'BEGIN { printf "  %-28s %6.2fx\n", l, a / b }'
}
echo
echo "ratios (this run, PROXY_CPUS=$PROXY_CPUS):"
ratio "passthrough / nginx" custos nginx
ratio "passthrough / bare pingora" custos pingora
ratio "audit on / audit off" audit custos
ratio "signed in / passthrough" auth custos
ratio "bearer / passthrough" bearer custos
ratio "bearer + policy / bearer" policy bearer
ratio "full / nginx" full nginx
ratio "full / passthrough" full custos
if [ -n "${P99[full]:-}" ] && [ -n "${P99[custos]:-}" ]; then
  awk -v f="$(mean "${P99[full]}")" -v c="$(mean "${P99[custos]}")" 'BEGIN { printf "  %-28s %+7.3f ms\n", "p99 added (full - passthr.)", f - c }'
fi
ratio "bare pingora / nginx" pingora nginx
ratio "nginx / direct" nginx direct
ratio "audit on / nginx" audit nginx

# CPU per request, both runs together: µs = ticks * 1e6 / CLK_TCK / requests.
echo
echo "CPU per request, µs (utime + stime from /proc, both runs; custos: per thread name):"
tck=$(getconf CLK_TCK)
for t in "${TARGETS[@]}"; do
  for k in "${!CPU[@]}"; do
    read -r kt label name <<<"$k"
    if [ "$kt" = "$t" ]; then echo "$label $name ${CPU[$k]}"; fi
  done | LC_ALL=C sort | awk -v t="$t" -v n="${REQS[$t]}" -v tck="$tck" '
    { us = $3 * 1e6 / tck / n
      if (!($1 in total)) order[++labels] = $1
      if ($2 == "total") total[$1] = sprintf(" %.1f", us)
      else { total[$1] = total[$1] ""; if ($3 > 0) threads[$1] = threads[$1] sprintf(" [%s %.1f]", $2, us) } }
    END { for (i = 1; i <= labels; i++) line = line (i > 1 ? " |" : "") " " order[i] total[order[i]] threads[order[i]]
          printf "  %-8s%s\n", t, line }'
done

# Into a file first: a closed pipe must not cut the verification short.
for trail in audit full; do
  [ -d "$AUDIT_RUN/$trail" ] || continue
  target/release/custos audit verify "$AUDIT_RUN/$trail" >"$OUT/verify-$trail.txt"
  echo "audit trail of $trail: $(head -1 "$OUT/verify-$trail.txt")"
done
echo "logs in $OUT"
