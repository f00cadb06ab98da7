-- Errors and notices the server sends, and what follows them.
\set ON_ERROR_STOP 0
SELECT * FROM no_such_table;
SELECT 1/0;
CREATE TABLE t (id int PRIMARY KEY);
INSERT INTO t VALUES (1);
INSERT INTO t VALUES (1);
SELECT 'after the error' AS still_here;
DO $$ BEGIN RAISE NOTICE 'a notice with %', 42; RAISE WARNING 'and a warning'; END $$;
SELECT 1; SELECT no_such_column FROM t; SELECT 3;
DROP TABLE IF EXISTS not_there;
SELECT 'end' AS last;
DROP TABLE t;
