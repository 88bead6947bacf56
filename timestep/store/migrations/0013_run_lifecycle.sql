-- A durable run's lifecycle (run_agent with a run_store, timestep worker), on the run's
-- active row: `running` (held by `lease_owner` until `lease_expires_at`, renewed while it
-- runs), `interrupted` (waiting for approvals), `finished` (`final_output`), `failed`
-- (`error`; the row keeps the state it started from, for a retry). A new run has no
-- state yet, only its `input`. Every change goes through the functions below, each
-- under the run's advisory lock and its active row's lock (FOR UPDATE: what workers
-- skip, SKIP LOCKED), so that a run is held by one process at a time, in Python or in
-- JavaScript. Rows saved before: `saved` is a finished run. A change of `decisions`
-- or a new active row notifies channel `timestep_runs` (workers wait on it).
ALTER TABLE run_states ADD COLUMN lease_owner text, ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN input json, ADD COLUMN final_output json, ADD COLUMN error text;
ALTER TABLE run_states DROP CONSTRAINT run_states_has_state;
ALTER TABLE run_states ADD CONSTRAINT run_states_has_state
    CHECK (state IS NOT NULL OR state_js IS NOT NULL OR input IS NOT NULL);
UPDATE run_states SET status = 'finished' WHERE status = 'saved';
CREATE INDEX run_states_workable ON run_states (status, lease_expires_at)
    WHERE active AND status IN ('running', 'interrupted');

-- Start a run on new input: refused (started = false) while another process holds
-- the run under a live lease; any other active row is retired, kept as history. Its
-- commit does not wait for the WAL (synchronous_commit off for this transaction): a
-- start lost with the database's own crash leaves no run to resume twice, and the
-- starting process is told when it records the end. Every later step is synced.
CREATE FUNCTION timestep_start_run(
    p_run_id text, p_agent_name text, p_sdk text, p_sdk_version text, p_input json,
    p_owner text, p_lease_seconds double precision)
RETURNS TABLE (started boolean, status text, lease_owner text, lease_expires_at timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    r run_states%ROWTYPE;
    expires timestamptz := clock_timestamp() + make_interval(secs => p_lease_seconds);
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- A new run id (the usual case): no active row to look at or retire.
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version,
                            schema_version, input, lease_owner, lease_expires_at)
    VALUES (p_run_id, p_agent_name, 'running', 0, p_sdk, p_sdk_version, '', p_input, p_owner, expires)
    ON CONFLICT (run_id) WHERE active DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, 'running'::text, p_owner, expires;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    SELECT * INTO r FROM run_states s WHERE s.run_id = p_run_id AND s.active FOR UPDATE;
    IF FOUND AND r.status = 'running' AND r.lease_expires_at >= clock_timestamp() THEN
        RETURN QUERY SELECT false, r.status, r.lease_owner, r.lease_expires_at;
        RETURN;
    END IF;
    UPDATE run_states s SET active = false WHERE s.run_id = p_run_id AND s.active;
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version,
                            schema_version, input, lease_owner, lease_expires_at)
    VALUES (p_run_id, p_agent_name, 'running', 0, p_sdk, p_sdk_version, '', p_input, p_owner, expires);
    RETURN QUERY SELECT true, 'running'::text, p_owner, expires;
END
$fn$;

-- Claim a run to resume it: only its active row (p_row_id, the row the caller loaded,
-- unless NULL), only if interrupted, failed, or running under an expired lease.
CREATE FUNCTION timestep_claim_run(
    p_run_id text, p_row_id bigint, p_owner text, p_lease_seconds double precision)
RETURNS TABLE (claimed boolean, active_id bigint, status text, lease_owner text, lease_expires_at timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE r run_states%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    SELECT * INTO r FROM run_states s WHERE s.run_id = p_run_id AND s.active FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF (p_row_id IS NULL OR r.id = p_row_id)
       AND (r.status IN ('interrupted', 'failed')
            OR (r.status = 'running' AND r.lease_expires_at < clock_timestamp())) THEN
        UPDATE run_states s SET status = 'running', lease_owner = p_owner, error = NULL,
            lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
            resumed_at = clock_timestamp()
        WHERE s.id = r.id;
        RETURN QUERY SELECT true, r.id, 'running'::text, p_owner,
            clock_timestamp() + make_interval(secs => p_lease_seconds);
        RETURN;
    END IF;
    RETURN QUERY SELECT false, r.id, r.status, r.lease_owner, r.lease_expires_at;
END
$fn$;

-- Claim up to p_limit runs a worker can take: interrupted with every pending call
-- decided (decisions name only pending calls), or running under an expired lease.
-- Rows another transaction has locked are skipped: many workers never take one run.
CREATE FUNCTION timestep_claim_runs(p_owner text, p_lease_seconds double precision, p_limit integer)
RETURNS TABLE (run_id text, id bigint) LANGUAGE sql AS $fn$
    WITH workable AS (
        SELECT s.id FROM run_states s
        WHERE s.active AND (
            (s.status = 'interrupted' AND s.pending_approvals > 0
             AND (SELECT count(*) FROM jsonb_object_keys(s.decisions)) >= s.pending_approvals)
            OR (s.status = 'running' AND s.lease_expires_at < clock_timestamp()))
        ORDER BY s.created_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    UPDATE run_states r SET status = 'running', lease_owner = p_owner, error = NULL,
        lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
        resumed_at = clock_timestamp()
    FROM workable w WHERE r.id = w.id
    RETURNING r.run_id, r.id;
$fn$;

CREATE FUNCTION timestep_notify_run() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify('timestep_runs', NEW.run_id);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER run_states_notify AFTER INSERT OR UPDATE OF decisions ON run_states
    FOR EACH ROW WHEN (NEW.active) EXECUTE FUNCTION timestep_notify_run();

-- Extend the lease of a run this owner holds; false if it no longer does.
CREATE FUNCTION timestep_renew_run_lease(p_run_id text, p_owner text, p_lease_seconds double precision)
RETURNS boolean LANGUAGE sql AS $fn$
    UPDATE run_states SET lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds)
    WHERE run_id = p_run_id AND active AND status = 'running' AND lease_owner = p_owner
    RETURNING true;
$fn$;

-- End a run this owner holds, releasing it: `failed` keeps the row (and the state it
-- started from) with the error, `finished` keeps it with the final output (a finished
-- run resumes no more: its state is not needed), `interrupted` saves the new state as
-- the active row. False, with nothing written, if the owner no longer holds the run.
CREATE FUNCTION timestep_end_run(
    p_run_id text, p_owner text, p_status text, p_agent_name text, p_pending_approvals integer,
    p_sdk text, p_sdk_version text, p_schema_version text, p_state json, p_state_js json,
    p_conversion_error text, p_final_output json, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE r run_states%ROWTYPE;
BEGIN
    IF p_status IN ('failed', 'finished') THEN  -- the row itself: its lock is enough
        UPDATE run_states s SET status = p_status, error = p_error, final_output = p_final_output,
            lease_expires_at = NULL,
            pending_approvals = CASE WHEN p_status = 'finished' THEN 0 ELSE s.pending_approvals END
        WHERE s.run_id = p_run_id AND s.active AND s.status = 'running' AND s.lease_owner = p_owner;
        RETURN FOUND;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    SELECT * INTO r FROM run_states s WHERE s.run_id = p_run_id AND s.active FOR UPDATE;
    IF NOT FOUND OR r.status <> 'running' OR r.lease_owner IS DISTINCT FROM p_owner THEN
        RETURN false;
    END IF;
    UPDATE run_states s SET active = false, lease_expires_at = NULL WHERE s.id = r.id;
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version, schema_version,
                            state, state_js, conversion_error)
    VALUES (p_run_id, p_agent_name, p_status, p_pending_approvals, p_sdk, p_sdk_version, p_schema_version,
            p_state, p_state_js, p_conversion_error);
    RETURN true;
END
$fn$;
