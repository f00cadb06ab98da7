-- COPY in and out through the client.
CREATE TABLE readings (id int, label text, value numeric);
COPY readings FROM STDIN WITH (FORMAT csv);
1,first,1.5
2,"second, with a comma",2.25
3,,3
\.
COPY readings TO STDOUT WITH (FORMAT csv, HEADER);
COPY (SELECT id, value * 2 FROM readings ORDER BY id) TO STDOUT;
\copy readings (id, label) from stdin
4	fourth
\.
SELECT count(*), sum(value) FROM readings;
DROP TABLE readings;
