#!/usr/bin/env bash
# HTTP passthrough benchmark: the demo upstream hit directly, nginx as a plain reverse
# proxy (upstream keepalive), bare pingora (bench/bare-pingora: the same framework and
# build, no filters), Custos on a passthrough route with the audit trail off, and the same
# with the audit trail on (every request: a decision record fsynced before forwarding,
# and a completion record), and Custos signed in (audit off; every request carries a
# session cookie: one Redis GET per request, the session judged, the MFA rule applied,
# the cookie stripped before the upstream), and Custos with a bearer token (RFC 9068
# access token from the test provider, checked once then remembered). wrk, 1 thread, 32
# connections, 10 s, each target twice, interleaved. wrk runs on CPU 0; the proxy and the
# upstream (each its own process, one worker each) share CPU 1.
#
#   bench/http.sh            (needs: apt-get install -y wrk nginx-light cmake)
#
# Never run by CI. Prints req/s, p50 and p99 per run, the means, and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
# CPUs of the proxies under test (nginx, pingora, Custos). Default: CPU 1, shared with the
# upstream. PROXY_CPUS=0,1 lets a proxy's extra threads (Custos's audit writer) run
# beside wrk instead of queueing behind the proxy on one core.
PROXY_CPUS=${PROXY_CPUS:-1}
CONNS=${CONNS:-32}
OUT=$(mktemp -d /tmp/custos-bench.XXXXXX)
UP=127.0.0.1:19000 NGX=127.0.0.1:19001 CUS=127.0.0.1:19002 BARE=127.0.0.1:19003 AUD=127.0.0.1:19004
AUTH=127.0.0.1:19005 REDIS_PORT=19006 BEARER=127.0.0.1:19007 IDP_PORT=19008 POLICY=127.0.0.1:19009
TARGETS=(direct nginx pingora custos audit auth bearer policy)
# ONLY="custos auth" measures a subset (the ratios then print only where both sides ran).
[ -n "${ONLY:-}" ] && read -ra TARGETS <<<"$ONLY"

for tool in wrk nginx taskset redis-server redis-cli sha256sum node npm; do
  command -v "$tool" >/dev/null || { echo "bench/http.sh: $tool is missing (apt-get install -y wrk nginx-light util-linux)" >&2; exit 1; }
done
cargo build --release --quiet --bin custos --bin demo-ephi
CARGO_TARGET_DIR="$PWD/target/bench" cargo build --release --quiet --manifest-path bench/bare-pingora/Cargo.toml

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

taskset -c 1 target/release/demo-ephi --listen "$UP" 2>"$OUT/demo.log" & pids+=($!)

mkdir -p "$OUT/nginx"
cat >"$OUT/nginx/nginx.conf" <<NGX
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx/body;
  proxy_temp_path $OUT/nginx/proxy;
  fastcgi_temp_path $OUT/nginx/fastcgi;
  uwsgi_temp_path $OUT/nginx/uwsgi;
  scgi_temp_path $OUT/nginx/scgi;
  upstream demo { server $UP; keepalive 256; }
  server {
    listen $NGX;
    location / { proxy_pass http://demo; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
taskset -c "$PROXY_CPUS" nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g 'daemon off;' & pids+=($!)

taskset -c "$PROXY_CPUS" target/bench/release/bare-pingora "$BARE" "$UP" 2>"$OUT/bare.log" & pids+=($!)

for variant in custos audit; do
  case $variant in custos) addr=$CUS enabled=false;; audit) addr=$AUD enabled=true;; esac
  cat >"$OUT/$variant.toml" <<CFG
[server]
threads = 1
[listen]
http = "$addr"
[log]
level = "warn"
[audit]
enabled = $enabled
dir = "$OUT/audit"
[[routes]]
name = "passthrough"
upstream = "http://$UP"
public = true
CFG
  taskset -c "$PROXY_CPUS" target/release/custos serve --config "$OUT/$variant.toml" 2>"$OUT/$variant.log" & pids+=($!)
done

# Signed in: Redis beside the upstream on CPU 1; a session written the way the gateway
# writes it (the key is the SHA-256 of the cookie value). The provider is never called
# (sessions exist already), so its address is a closed port.
taskset -c "${REDIS_CPUS:-1}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
SID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
now=$(date +%s)
redis-cli -p "$REDIS_PORT" SET "custos-bench:s:$(printf %s "$SID" | sha256sum | cut -d' ' -f1)" \
  "{\"subject\":\"bench\",\"groups\":[\"clinicians\"],\"amr\":[\"pwd\",\"otp\"],\"acr\":\"urn:custos:mfa\",\"created\":$now,\"last_seen\":$now}" EX 3600 >/dev/null
echo bench-secret >"$OUT/client-secret"
cat >"$OUT/auth.toml" <<CFG
[server]
threads = 1
[listen]
http = "$AUTH"
[log]
level = "warn"
[audit]
enabled = false
dir = "$OUT/audit-auth"
[oidc]
issuer = "http://127.0.0.1:9"
client_id = "bench"
client_secret = { file = "$OUT/client-secret" }
redirect_url = "http://$AUTH/.custos/callback"
[session]
redis_url = "redis://127.0.0.1:$REDIS_PORT/"
key_prefix = "custos-bench"
idle_timeout_secs = 3600
[[routes]]
name = "signed-in"
upstream = "http://$UP"
CFG
taskset -c "$PROXY_CPUS" target/release/custos serve --config "$OUT/auth.toml" 2>"$OUT/auth.log" & pids+=($!)
for _ in $(seq 50); do curl -fs -H "Cookie: custos_session=$SID" "http://$AUTH/plain" >/dev/null && break; sleep 0.1; done
curl -fs -H "Cookie: custos_session=$SID" "http://$AUTH/plain" >/dev/null || { echo "bench/http.sh: the signed-in target is not answering" >&2; exit 1; }

# Bearer: the test provider (tests/idp) on CPU 0 signs an RFC 9068 access token with its
# key; the gateway fetches its keys once and checks the token (then remembered until it
# expires), applies the MFA rule and sends the identity assertion upstream.
[ -d tests/idp/node_modules/oidc-provider ] || (cd tests/idp && npm ci --omit=dev --no-audit --no-fund >/dev/null)
# `exec`: the pid kept is the provider's own, so the cleanup stops it.
(cd tests/idp && PORT=$IDP_PORT CUSTOS_IDP_TEST_SIGNER=1 exec taskset -c 0 node server.mjs >"$OUT/idp.log" 2>&1) & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -fs -X POST "http://127.0.0.1:$IDP_PORT/test/sign" -H 'content-type: application/json' \
  -d "{\"header\":{\"typ\":\"at+jwt\"},\"payload\":{\"iss\":\"http://127.0.0.1:$IDP_PORT\",\"aud\":\"urn:custos:api\",\"sub\":\"bench\",\"groups\":[\"clinicians\"],\"amr\":[\"pwd\",\"otp\"],\"iat\":$now,\"exp\":$((now + 3600))}}")
sed -e "s|$AUTH|$BEARER|" -e "s|issuer = \"http://127.0.0.1:9\"|issuer = \"http://127.0.0.1:$IDP_PORT\"\napi_audience = \"urn:custos:api\"|" \
  -e "s|audit-auth|audit-bearer|" "$OUT/auth.toml" >"$OUT/bearer.toml"
taskset -c "$PROXY_CPUS" target/release/custos serve --config "$OUT/bearer.toml" 2>"$OUT/bearer.log" & pids+=($!)
for _ in $(seq 50); do curl -fs -H "Authorization: Bearer $TOKEN" "http://$BEARER/plain" >/dev/null && break; sleep 0.1; done
curl -fs -H "Authorization: Bearer $TOKEN" "http://$BEARER/plain" >/dev/null || { echo "bench/http.sh: the bearer target is not answering" >&2; exit 1; }

# Policy: the bearer target plus casbin on every request (the example HIPAA model and
# policy, with the rule that allows the benchmark's request appended last).
cp policies/hipaa_model.conf "$OUT/policy-model.conf"
{ cat policies/hipaa_policy.csv; echo "p, physician, cardiology, ehr:/plain, GET, allow"; } >"$OUT/policy.csv"
sed -e "s|$BEARER|$POLICY|" -e "s|audit-bearer|audit-policy|" -e 's|^name = "signed-in"|name = "signed-in"\nresource = "ehr"\ndomain = "cardiology"|' \
  "$OUT/bearer.toml" >"$OUT/policy.toml"
printf '[policy]\nmodel = "%s"\npolicy = "%s"\n' "$OUT/policy-model.conf" "$OUT/policy.csv" >>"$OUT/policy.toml"
taskset -c "$PROXY_CPUS" target/release/custos serve --config "$OUT/policy.toml" 2>"$OUT/policy.log" & pids+=($!)
for _ in $(seq 50); do curl -fs -H "Authorization: Bearer $TOKEN" "http://$POLICY/plain" >/dev/null && break; sleep 0.1; done
curl -fs -H "Authorization: Bearer $TOKEN" "http://$POLICY/plain" >/dev/null || { echo "bench/http.sh: the policy target is not answering" >&2; exit 1; }

for addr in $UP $NGX $BARE $CUS $AUD; do
  for _ in $(seq 50); do curl -fs "http://$addr/plain" >/dev/null && break; sleep 0.1; done
  curl -fs "http://$addr/plain" >/dev/null || { echo "bench/http.sh: $addr is not answering" >&2; exit 1; }
done

# wrk prints latency with units; convert to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

declare -A RPS P50 P99
printf '%-8s %-3s %12s %10s %10s\n' target run req/s p50_ms p99_ms
for run in 1 2; do
  for t in "${TARGETS[@]}"; do
    case $t in direct) a=$UP;; nginx) a=$NGX;; pingora) a=$BARE;; custos) a=$CUS;; audit) a=$AUD;; auth) a=$AUTH;; bearer) a=$BEARER;; policy) a=$POLICY;; esac
    hdr=(); [ "$t" = auth ] && hdr=(-H "Cookie: custos_session=$SID"); [ "$t" = bearer ] || [ "$t" = policy ] && hdr=(-H "Authorization: Bearer $TOKEN")
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$DUR" --latency "${hdr[@]}" "http://$a/plain")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
    [ -n "$errs" ] && echo "  $t: $errs" >&2
    printf '%-8s %-3s %12.0f %10s %10s\n' "$t" "$run" "$rps" "$p50" "$p99"
    RPS[$t]="${RPS[$t]:-} $rps"; P50[$t]="${P50[$t]:-} $p50"; P99[$t]="${P99[$t]:-} $p99"
  done
done
mean() { awk '{s=0; for(i=1;i<=NF;i++) s+=$i; printf "%.3f", s/NF}' <<<"$1"; }
echo
printf '%-8s %12s %10s %10s\n' target mean_req/s p50_ms p99_ms
for t in "${TARGETS[@]}"; do
  printf '%-8s %12.0f %10s %10s\n' "$t" "$(mean "${RPS[$t]}")" "$(mean "${P50[$t]}")" "$(mean "${P99[$t]}")"
done
[ -n "${ONLY:-}" ] && { c=$(mean "${RPS[custos]:-0}") s=$(mean "${RPS[auth]:-0}") b=$(mean "${RPS[bearer]:-0}") q=$(mean "${RPS[policy]:-0}"); awk -v c="$c" -v s="$s" -v b="$b" -v q="$q" 'BEGIN { if (c > 0 && s > 0) printf "signed-in/passthrough %.2fx\n", s/c; if (c > 0 && b > 0) printf "bearer/passthrough %.2fx\n", b/c; if (b > 0 && q > 0) printf "policy/bearer %.2fx\n", q/b }'; exit 0; }
d=$(mean "${RPS[direct]}") n=$(mean "${RPS[nginx]}") p=$(mean "${RPS[pingora]}") c=$(mean "${RPS[custos]}") a=$(mean "${RPS[audit]}") s=$(mean "${RPS[auth]}")
c99=$(mean "${P99[custos]}") s99=$(mean "${P99[auth]}") b=$(mean "${RPS[bearer]}") b99=$(mean "${P99[bearer]}")
echo
awk -v d="$d" -v n="$n" -v p="$p" -v c="$c" -v a="$a" -v s="$s" -v c99="$c99" -v s99="$s99" -v b="$b" -v b99="$b99" 'BEGIN { printf "ratios: custos/nginx %.2fx   custos/pingora %.2fx   pingora/nginx %.2fx   nginx/direct %.2fx\n        audit-on/audit-off %.2fx   audit-on/nginx %.2fx\n        signed-in/passthrough %.2fx (p99 %+.3f ms)   signed-in/nginx %.2fx\n        bearer/passthrough %.2fx (p99 %+.3f ms)\n", c/n, c/p, p/n, n/d, a/c, a/n, s/c, s99-c99, s/n, b/c, b99-c99 }'
# Into a file first: a closed pipe must not cut the verification short.
target/release/custos audit verify "$OUT/audit" >"$OUT/verify.txt"
head -1 "$OUT/verify.txt"
echo "logs in $OUT"
