-- Large rows and many rows.
SELECT length(repeat('x', 3000000)) AS big_len;
SELECT md5(repeat('abc', 1000000)) AS big_hash;
SELECT repeat('y', 200000) AS wide;
SELECT count(*), sum(i) FROM generate_series(1, 200000) AS i;
SELECT i, md5(i::text) FROM generate_series(1, 3000) AS i;
