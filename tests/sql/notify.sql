-- LISTEN and NOTIFY on one connection (psql prints the notification after the command).
LISTEN ward_events;
NOTIFY ward_events, 'bed 4 free';
SELECT pg_notify('ward_events', 'bed 5 free');
UNLISTEN ward_events;
NOTIFY ward_events, 'nobody hears this';
SELECT 'done' AS done;
