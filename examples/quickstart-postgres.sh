#!/usr/bin/env bash
# The quickstart's PostgreSQL (quickstart.sh runs it; so does tests/e2e/quickstart.rs):
#   quickstart-postgres.sh start RUN PORT CERTS   a new server on 127.0.0.1:PORT, data in
#                                                 RUN/pg, TLS with CERTS/server.pem, the
#                                                 synthetic database of patients.sql, the
#                                                 two roles' new passwords in
#                                                 RUN/ehr_ro-password and RUN/ehr_admin-password
#   quickstart-postgres.sh stop RUN               stops it
# Server binaries from /usr/lib/postgresql/<version>/bin (Debian's), newest first. As
# root it runs as the `postgres` system user (PostgreSQL refuses root), else as you.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pgbin" ] && [ -x "$pgbin/pg_ctl" ] || { echo "quickstart: needs PostgreSQL (Debian package postgresql)" >&2; exit 1; }
as_pg() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "quickstart: as root, PostgreSQL needs the postgres system user (package postgresql)" >&2; exit 1; }
  as_pg() { setpriv --reuid postgres --regid postgres --init-groups -- "$@"; }
fi
run=$(cd "$2" && pwd -P)
pg=$run/pg

if [ "$1" = stop ]; then
  [ ! -f "$pg/data/postmaster.pid" ] || as_pg "$pgbin/pg_ctl" -D "$pg/data" -m fast -w stop >/dev/null
  exit 0
fi
port=$3
certs=$4

# A new database on every start: the rows are synthetic, and the passwords new.
[ ! -f "$pg/data/postmaster.pid" ] || as_pg "$pgbin/pg_ctl" -D "$pg/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$pg"
mkdir -p "$pg/tls"
cp "$certs/server.pem" "$certs/server-key.pem" "$pg/tls/"
chmod 700 "$pg" && chmod 600 "$pg/tls/server-key.pem"
[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$pg"
as_pg test -w "$pg" || { echo "quickstart: the postgres user cannot reach $pg; put the checkout where it can" >&2; exit 1; }
for role in ehr_ro ehr_admin; do
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/$role-password")
done
as_pg "$pgbin/initdb" -D "$pg/data" --username=postgres --auth=trust --encoding=UTF8 --no-locale --no-sync >"$run/initdb.log" 2>&1 \
  || { echo "quickstart: initdb failed; see $run/initdb.log" >&2; exit 1; }
# The superuser only over the socket in the private folder; the two roles over TLS only.
cat > "$pg/data/pg_hba.conf" <<HBA
local all postgres trust
hostssl ehr ehr_ro,ehr_admin 127.0.0.1/32 scram-sha-256
HBA
opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg -c ssl=on"
opts="$opts -c ssl_cert_file=$pg/tls/server.pem -c ssl_key_file=$pg/tls/server-key.pem"
as_pg "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
  || { echo "quickstart: PostgreSQL did not start; see $pg/postgres.log" >&2; exit 1; }
"$pgbin/psql" -X -q -h "$pg" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -v ro_password="$(cat "$run/ehr_ro-password")" -v admin_password="$(cat "$run/ehr_admin-password")" \
  -f "$here/patients.sql" >"$run/patients.log" 2>&1 \
  || { echo "quickstart: loading examples/patients.sql failed; see $run/patients.log" >&2; exit 1; }
