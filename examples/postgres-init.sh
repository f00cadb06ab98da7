#!/bin/sh
# docker-compose.yml's postgres service runs this once, on an empty volume: the synthetic
# `ehr` database of examples/patients.sql, its two roles' passwords from the environment.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v ro_password="$EHR_RO_PASSWORD" -v admin_password="$EHR_ADMIN_PASSWORD" \
  -f /custos/patients.sql
