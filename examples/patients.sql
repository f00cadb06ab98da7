-- The database of the quickstart (examples/quickstart.sh) and of docker-compose.yml:
-- `ehr` with a synthetic `patients` table (invented people, never real data) and the two
-- upstream roles Custos signs in as: `ehr_ro` (SELECT only) and `ehr_admin` (the owner).
-- Nobody signs in as them but the gateway; their passwords come as psql variables:
--   psql -v ro_password=… -v admin_password=… -f examples/patients.sql
\set ON_ERROR_STOP on
CREATE ROLE ehr_admin LOGIN PASSWORD :'admin_password';
CREATE ROLE ehr_ro LOGIN PASSWORD :'ro_password';
CREATE DATABASE ehr OWNER ehr_admin;
REVOKE CONNECT ON DATABASE ehr FROM PUBLIC;
GRANT CONNECT ON DATABASE ehr TO ehr_admin, ehr_ro;

\connect ehr
SET ROLE ehr_admin;
CREATE TABLE patients (
  id int PRIMARY KEY,
  name text NOT NULL,
  mrn text NOT NULL UNIQUE,
  dob date NOT NULL,
  ward text NOT NULL
);
INSERT INTO patients VALUES
  (1, 'Test Patient One', 'MRN-TEST-0001', '1970-01-01', 'cardiology'),
  (2, 'Test Patient Two', 'MRN-TEST-0002', '1980-02-02', 'cardiology'),
  (3, 'Test Patient Three', 'MRN-TEST-0003', '1990-03-03', 'cardiology');
GRANT SELECT ON patients TO ehr_ro;
RESET ROLE;
