-- The text form of the common data types.
SELECT 1::smallint, 2::int, 3::bigint, 4.5::real, 6.25::double precision, 7.125::numeric(10,3);
SELECT true, false, NULL::boolean;
SELECT 'text'::text, 'chars'::char(8), 'var'::varchar(10), E'tab\there', 'quote''s';
SELECT '2026-12-01'::date, '13:45:00'::time, '2026-12-01 13:45:00'::timestamp;
SELECT '2026-12-01 13:45:00+00'::timestamptz AT TIME ZONE 'UTC', '1 day 2 hours'::interval;
SELECT '\xdeadbeef'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid;
SELECT '{"a": [1, 2, {"b": null}]}'::json, '{"b": 2, "a": 1}'::jsonb;
SELECT ARRAY[1, 2, 3], ARRAY['x', NULL, 'z'], '{{1,2},{3,4}}'::int[];
SELECT '192.168.0.1/24'::inet, '10.0.0.0/8'::cidr, '08:00:2b:01:02:03'::macaddr;
SELECT '(1,2)'::point, '[1,5)'::int4range, 'infinity'::timestamp, 'NaN'::float8;
SELECT 'héllo wörld ✓'::text, length('héllo'), upper('straße');
SELECT x, x * x AS sq FROM generate_series(1, 5) AS x;
