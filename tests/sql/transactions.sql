-- Transactions, savepoints, an aborted transaction, rollback.
\set ON_ERROR_STOP 0
CREATE TABLE ledger (id int PRIMARY KEY, note text);
BEGIN;
INSERT INTO ledger VALUES (1, 'one');
SAVEPOINT a;
INSERT INTO ledger VALUES (2, 'two');
ROLLBACK TO SAVEPOINT a;
INSERT INTO ledger VALUES (3, 'three');
RELEASE SAVEPOINT a;
COMMIT;
SELECT * FROM ledger ORDER BY id;
BEGIN;
INSERT INTO ledger VALUES (4, 'four');
SELECT 1/0;
INSERT INTO ledger VALUES (5, 'five');
ROLLBACK;
SELECT count(*) FROM ledger;
BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY;
SELECT note FROM ledger WHERE id = 1;
COMMIT;
START TRANSACTION;
DELETE FROM ledger WHERE id = 3;
ROLLBACK;
SELECT id FROM ledger ORDER BY id;
DROP TABLE ledger;
