-- DDL and DML, RETURNING, upserts, views, sequences.
CREATE TABLE wards (id serial PRIMARY KEY, name text NOT NULL UNIQUE, beds int CHECK (beds >= 0));
CREATE INDEX wards_beds ON wards (beds);
INSERT INTO wards (name, beds) VALUES ('cardiology', 12), ('oncology', 8), ('icu', 4) RETURNING id, name;
INSERT INTO wards (name, beds) VALUES ('icu', 6) ON CONFLICT (name) DO UPDATE SET beds = EXCLUDED.beds RETURNING *;
UPDATE wards SET beds = beds + 1 WHERE name LIKE '%ology' RETURNING name, beds;
DELETE FROM wards WHERE beds < 5;
SELECT * FROM wards ORDER BY id;
CREATE VIEW big_wards AS SELECT name FROM wards WHERE beds > 9;
SELECT * FROM big_wards;
ALTER TABLE wards ADD COLUMN floor smallint DEFAULT 1;
SELECT name, floor FROM wards ORDER BY name;
CREATE SEQUENCE visit_no START 100;
SELECT nextval('visit_no'), nextval('visit_no');
WITH moved AS (UPDATE wards SET floor = 2 WHERE name = 'oncology' RETURNING name) SELECT count(*) FROM moved;
MERGE INTO wards w USING (VALUES ('icu', 5), ('er', 3)) AS v(name, beds) ON w.name = v.name
  WHEN MATCHED THEN UPDATE SET beds = v.beds WHEN NOT MATCHED THEN INSERT (name, beds) VALUES (v.name, v.beds);
SELECT name, beds FROM wards ORDER BY name;
SELECT 1 AS one; SELECT 2 AS two;
TRUNCATE wards;
SELECT count(*) FROM wards;
DROP VIEW big_wards;
DROP TABLE wards;
