#!/usr/bin/env bash
# Memory: the resident set (VmRSS from /proc) of Custos and of nginx, idle after start, with
# $CONNS (10,000) idle keep-alive client connections open (each did one GET /plain), and
# of a signed-in Custos after $SESSIONS (1,000) distinct sessions were each used once.
# Custos: release build, `threads = 1`, a passthrough route (audit off), the client idle
# timeout raised so the connections stay; nginx: one worker, keep-alive 600 s (its RSS:
# master + worker); bare pingora (bench/bare-pingora) beside them, to tell pingora's share
# from Custos's. The client is bench/conns.py (python3 asyncio, 127.0.0.1 only, every
# step with a deadline).
#
#   bench/memory.sh                  (needs: apt-get install -y nginx-light redis-server python3)
#   CONNS=2000 SESSIONS=200 bench/memory.sh
#
# Never run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=bench/memory.sh
. bench/common.sh
need nginx taskset redis-server redis-cli python3 curl

CONNS=${CONNS:-10000}
SESSIONS=${SESSIONS:-1000}
# The [session] key that bounds the session cache, and its value (at least $SESSIONS, so
# the cache holds them all). SESSION_CACHE_KEY= (empty): no such key is written, the
# gateway's default applies.
SESSION_CACHE_KEY=${SESSION_CACHE_KEY-max_cached_sessions}
SESSION_CACHE_MAX=${SESSION_CACHE_MAX:-$((SESSIONS * 2))}
OUT=$(mktemp -d /tmp/custos-memory.XXXXXX)
UP=127.0.0.1:19100 NGX=127.0.0.1:19101 CUS=127.0.0.1:19102 AUTH=127.0.0.1:19103 REDIS_PORT=19104
BARE=127.0.0.1:19105

# Each side holds $CONNS sockets (the client, the proxy); nginx raises its own limit.
want=$((CONNS + 1024))
[ "$(ulimit -Hn)" -ge "$want" ] || { echo "$BENCH: needs $want open files (ulimit -Hn is $(ulimit -Hn)); lower CONNS" >&2; exit 1; }
ulimit -n "$want"

build_release
build_bare
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

taskset -c 1 target/release/demo-ephi --listen "$UP" 2>"$OUT/demo.log" & pids+=($!)
nginx_conf "$OUT/nginx" "$NGX" "$UP" "$CONNS"
taskset -c 1 nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g 'daemon off;' & pids+=($!)
NGX_PID=$!
taskset -c 1 target/bench/release/bare-pingora "$BARE" "$UP" 2>"$OUT/bare.log" & pids+=($!)
BARE_PID=$!
idle=$'[limits]\nclient_idle_timeout_secs = 3600'
custos_conf "$OUT/custos.toml" "$CUS" off none none "$idle"
taskset -c 1 target/release/custos serve --config "$OUT/custos.toml" 2>"$OUT/custos.log" & pids+=($!)
CUS_PID=$!
start_redis 1
seed_sessions "$SESSIONS" "$OUT/cookies.hdr"
cache=""
[ -n "$SESSION_CACHE_KEY" ] && cache="$SESSION_CACHE_KEY = $SESSION_CACHE_MAX"
custos_conf "$OUT/auth.toml" "$AUTH" off session none "$cache"$'\n'"$idle"
taskset -c 1 target/release/custos serve --config "$OUT/auth.toml" 2>"$OUT/auth.log" & pids+=($!)
AUTH_PID=$!
wait_ok upstream "http://$UP/plain"
wait_ok nginx "http://$NGX/plain"
wait_ok custos "http://$CUS/plain"
wait_ok "bare pingora" "http://$BARE/plain"
wait_ok signed-in "http://$AUTH/plain" "$(head -1 "$OUT/cookies.hdr")"
: >"$OUT/none.hdr"

# rss_kib PID...: the sum of their VmRSS, KiB.
rss_kib() {
  local p sum=0 kb
  for p in "$@"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
    sum=$((sum + kb))
  done
  echo "$sum"
}
nginx_pids() { echo "$NGX_PID" $(pgrep -P "$NGX_PID"); }

# with_idle_conns ADDR PID...: RSS (KiB) := the VmRSS of PIDs while $CONNS idle connections
# are open to ADDR; stops when the server closed any of them before the RSS was read.
with_idle_conns() {
  local addr=$1 ready open
  shift
  coproc CLIENT { exec python3 bench/conns.py hold "$addr" "$CONNS" "$OUT/none.hdr" 2>"$OUT/conns.log"; }
  read -r -t 300 _ ready <&"${CLIENT[0]}" || { echo "$BENCH: the client did not open its connections to $addr (see $OUT/conns.log)" >&2; exit 1; }
  sleep 2 # let the server settle
  RSS=$(rss_kib "$@")
  echo done >&"${CLIENT[1]}"
  read -r -t 60 _ open <&"${CLIENT[0]}" || open=0
  wait "$CLIENT_PID" 2>/dev/null || true
  [ "$ready" = "$CONNS" ] && [ "$open" = "$CONNS" ] ||
    { echo "$BENCH: $addr kept $open of $CONNS connections (ready: $ready)" >&2; exit 1; }
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
per_conn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.2f", (b - a) / n }'; }

ngx_idle=$(rss_kib $(nginx_pids))
with_idle_conns "$NGX" $(nginx_pids)
ngx_conns=$RSS
bare_idle=$(rss_kib "$BARE_PID")
with_idle_conns "$BARE" "$BARE_PID"
bare_conns=$RSS
cus_idle=$(rss_kib "$CUS_PID")
with_idle_conns "$CUS" "$CUS_PID"
cus_conns=$RSS
sleep 1
cus_after=$(rss_kib "$CUS_PID")

auth_idle=$(rss_kib "$AUTH_PID")
used=$(timeout 300 python3 bench/conns.py each "$AUTH" "$OUT/cookies.hdr" 2>>"$OUT/conns.log" | awk '{print $2}')
[ "$used" = "$SESSIONS" ] || { echo "$BENCH: only ${used:-0} of $SESSIONS sessions answered 200 (see $OUT/conns.log)" >&2; exit 1; }
sleep 1
auth_sessions=$(rss_kib "$AUTH_PID")

echo "VmRSS, MiB (release build; threads = 1; nginx: master + 1 worker)"
printf '%-44s %10s %12s\n' "" "RSS MiB" "KiB per conn"
printf '%-44s %10s %12s\n' "nginx, idle" "$(mib "$ngx_idle")" ""
printf '%-44s %10s %12s\n' "nginx, $CONNS idle keep-alive connections" "$(mib "$ngx_conns")" "$(per_conn "$ngx_idle" "$ngx_conns" "$CONNS")"
printf '%-44s %10s %12s\n' "bare pingora, idle" "$(mib "$bare_idle")" ""
printf '%-44s %10s %12s\n' "bare pingora, $CONNS idle connections" "$(mib "$bare_conns")" "$(per_conn "$bare_idle" "$bare_conns" "$CONNS")"
printf '%-44s %10s %12s\n' "Custos passthrough, idle" "$(mib "$cus_idle")" ""
printf '%-44s %10s %12s\n' "Custos passthrough, $CONNS idle connections" "$(mib "$cus_conns")" "$(per_conn "$cus_idle" "$cus_conns" "$CONNS")"
printf '%-44s %10s %12s\n' "Custos passthrough, after they closed" "$(mib "$cus_after")" ""
printf '%-44s %10s %12s\n' "Custos signed in, one session used" "$(mib "$auth_idle")" ""
printf '%-44s %10s %12s\n' "Custos signed in, $SESSIONS sessions used" "$(mib "$auth_sessions")" "$(per_conn "$auth_idle" "$auth_sessions" "$SESSIONS") /sess"
echo "session cache key: ${SESSION_CACHE_KEY:-none (SESSION_CACHE_KEY unset)}${SESSION_CACHE_KEY:+ = $SESSION_CACHE_MAX}"
awk -v c="$cus_conns" -v n="$ngx_conns" 'BEGIN { printf "Custos / nginx RSS with the connections open: %.2fx\n", c / n }'
echo "logs in $OUT"
