#!/usr/bin/env bash
# The quickstart: Custos in front of the demo ePHI service and a local PostgreSQL, with
# sign-in through a local OpenID provider and sessions in a local Redis, all on 127.0.0.1:
#   http://127.0.0.1:8080/welcome           the demo's front page (public); records at /patients,
#                                           decided by the example HIPAA policy (policies/)
#   127.0.0.1:6432                          the gateway's PostgreSQL front end (database `ehr`)
#   127.0.0.1:6543                          PostgreSQL (synthetic patients: examples/patients.sql)
#   http://127.0.0.1:4400                   the local OpenID provider (tests/idp)
#   127.0.0.1:6380                          redis-server (sessions)
#   http://127.0.0.1:9090/metrics           Prometheus metrics
# Installs what is missing (cmake, redis-server, Node.js, PostgreSQL, libclang) with
# apt-get. Ctrl+C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)                 # pingora's build
command -v c++ >/dev/null || need+=(g++)
command -v redis-server >/dev/null || need+=(redis-server)   # sessions
command -v npm >/dev/null || need+=(nodejs npm)              # the local OpenID provider
[ -x "$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)/pg_ctl" ] || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
# pg_query's build (bindgen) needs libclang; it has no program to look for.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "quickstart: please install: ${need[*]}" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "quickstart: installing ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

for port in 8080 8443 9090 9000 4400 6380 6432 6543; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "quickstart: port $port on 127.0.0.1 is already in use; stop what uses it and try again" >&2
    exit 1
  fi
done

cargo build --bin custos --bin demo-ephi
[ -f certs/dev/server.pem ] || target/debug/custos certs dev --out certs/dev
[ -d tests/idp/node_modules/oidc-provider ] || (cd tests/idp && npm ci --omit=dev --no-audit --no-fund)

# The client secret shared by the provider and the gateway: made once, never committed.
secret_file=examples/quickstart-client-secret
if [ ! -s "$secret_file" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret_file")
fi
secret=$(cat "$secret_file")

run=examples/.quickstart
mkdir -p "$run"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  examples/quickstart-postgres.sh stop "$run" || true
}
trap cleanup EXIT

# PostgreSQL with the synthetic patients, and the two upstream roles' new passwords, which
# only the gateway reads (never the person who signs in).
examples/quickstart-postgres.sh start "$run" 6543 certs/dev
target/debug/custos check --config examples/quickstart.toml

redis-server --port 6380 --bind 127.0.0.1 --save "" --appendonly no >"$run/redis.log" 2>&1 &
pids+=($!)
CUSTOS_IDP_CLIENTS=$(cat <<JSON
[{"client_id":"custos-quickstart","client_secret":"$secret",
  "redirect_uris":["http://127.0.0.1:8080/.custos/callback"],
  "post_logout_redirect_uris":["http://127.0.0.1:8080/welcome"],
  "backchannel_logout_uri":"http://127.0.0.1:8080/.custos/backchannel-logout",
  "backchannel_logout_session_required":true,
  "response_types":["code"],"grant_types":["authorization_code","refresh_token"]}]
JSON
) PORT=4400 node tests/idp/server.mjs >"$run/idp.log" 2>&1 &
pids+=($!)
target/debug/demo-ephi --listen 127.0.0.1:9000 --jwks http://127.0.0.1:8080/.custos/jwks.json >"$run/demo.log" 2>&1 &
pids+=($!)

for port in 6380 4400 9000; do
  for _ in $(seq 600); do   # up to a minute: a busy machine starts node slowly
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "quickstart: nothing started on port $port; see $run/*.log" >&2; exit 1; }
done

cat <<MSG

  Custos is starting in front of the demo ePHI service (synthetic patients), with the
  example HIPAA policy (policies/) and emergency access on. Sign in at the local provider
  (every one-time code is 123456):

    nora / nora-password    a nurse: reads records, adds notes (with her code), never deletes
    alice / alice-password  a physician;  bob / bob-password  a nurse with no second factor
    sam (security lead), adam (administrator), rhea, ravi, rosa (reviewers): <name>-password

  1. Read. Open http://127.0.0.1:8080/patients/1/notes and sign in as nora, leaving the
     code empty: one factor is enough to read.
  2. Step up for a write. On the demo's page http://127.0.0.1:8080/welcome press "Add a
     note": 401, the policy wants a second factor for writes. Sign in again with the
     code at http://127.0.0.1:8080/.custos/login?rd=/welcome and add the note: 201.
  3. Refused a delete. Press "Delete note 1": 403, nurses never delete (a deny rule,
     even with MFA).
  4. Declare an emergency. http://127.0.0.1:8080/patients/3 is a restricted record:
     403 for nurses. Open
       http://127.0.0.1:8080/.custos/breakglass?route=demo-patients&path=/patients/3
     give a reason and the record opens, for 15 minutes, on the record.
  5. Review it. In a private window, sign in as rhea (a reviewer, with the code) at
     http://127.0.0.1:8080/.custos/breakglass/reviews and judge nora's reason.
  6. Reach the database (synthetic patients in PostgreSQL) with psql, in another terminal.
     Sign in as nora in the browser, with her code (add --no-browser without one here):
       target/debug/custos db login ehr --gateway http://127.0.0.1:8080 --ca certs/dev/ca.pem --pg-port 6432
     It saves a token of its own in ~/.pgpass and prints the command to connect:
       psql "host=127.0.0.1 port=6432 dbname=ehr user=nora sslmode=verify-full sslrootcert=$(pwd -P)/certs/dev/ca.pem"
     then: SELECT * FROM patients;  (nora reads as ehr_ro; adam, the administrator, is ehr_admin)

  Watch every decision as it is made (another terminal):
    target/debug/custos audit tail --dir examples/audit
  Without a browser, protected pages answer 401:  curl -i http://127.0.0.1:8080/patients
  Readiness (Redis and the provider):             curl http://127.0.0.1:8080/.custos/readyz
  Sign out at http://127.0.0.1:8080/.custos/logout. After stopping, verify the chain:
    target/debug/custos audit verify --key examples/audit/signing-key.pub examples/audit
  Ctrl+C to stop.

MSG
target/debug/custos serve --config examples/quickstart.toml
