-- A durable run's journal: what each segment of the run (the run_states row it runs
-- from: a start's, or the interrupted row a claim takes) has done, step by step, as each
-- step completes. A run recovered after its process died replays its segment's journal
-- instead of calling the model and the tools again. `kind` is `model` (the `turn`-th
-- model response of the segment), `tool` (the output of call `call_id`, made after
-- `turn` model responses) or `session` (the `turn`-th write to the run's session: the
-- ids of the items it added, written by the same statement as the items). `seq` is the
-- order the steps were journaled in. A step is written only while the run's row is held
-- by the writer (its lease owner), under a share lock of that row, so a process that
-- lost its run can journal nothing once another has claimed it (timestep/journal.py).
CREATE TABLE run_steps (
    run_id text NOT NULL,
    state_id bigint NOT NULL REFERENCES run_states (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('model', 'tool', 'session')),
    turn integer NOT NULL,
    call_id text NOT NULL DEFAULT '',
    seq integer NOT NULL,
    payload json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (state_id, kind, turn, call_id)
);
CREATE INDEX run_steps_created_at ON run_steps (created_at);

-- timestep_start_run, also returning the id of the row it started (the journal's
-- state_id). The same arguments and columns as before, with `id` last.
DROP FUNCTION timestep_start_run(text, text, text, text, json, text, double precision);
CREATE FUNCTION timestep_start_run(
    p_run_id text, p_agent_name text, p_sdk text, p_sdk_version text, p_input json,
    p_owner text, p_lease_seconds double precision)
RETURNS TABLE (started boolean, status text, lease_owner text, lease_expires_at timestamptz, id bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    r run_states%ROWTYPE;
    new_id bigint;
    expires timestamptz := clock_timestamp() + make_interval(secs => p_lease_seconds);
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version,
                            schema_version, input, lease_owner, lease_expires_at)
    VALUES (p_run_id, p_agent_name, 'running', 0, p_sdk, p_sdk_version, '', p_input, p_owner, expires)
    ON CONFLICT (run_id) WHERE active DO NOTHING
    RETURNING run_states.id INTO new_id;
    IF FOUND THEN
        RETURN QUERY SELECT true, 'running'::text, p_owner, expires, new_id;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    SELECT * INTO r FROM run_states s WHERE s.run_id = p_run_id AND s.active FOR UPDATE;
    IF FOUND AND r.status = 'running' AND r.lease_expires_at >= clock_timestamp() THEN
        RETURN QUERY SELECT false, r.status, r.lease_owner, r.lease_expires_at, r.id;
        RETURN;
    END IF;
    UPDATE run_states s SET active = false WHERE s.run_id = p_run_id AND s.active;
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version,
                            schema_version, input, lease_owner, lease_expires_at)
    VALUES (p_run_id, p_agent_name, 'running', 0, p_sdk, p_sdk_version, '', p_input, p_owner, expires)
    RETURNING run_states.id INTO new_id;
    RETURN QUERY SELECT true, 'running'::text, p_owner, expires, new_id;
END
$fn$;

-- timestep_claim_run, also recording decisions made on the state being resumed
-- (p_decisions, as `timestep runs approve` records them, when the row lacks them): a
-- recovery of the segment then resumes with the same approvals. And it says which
-- status the run was claimed from: a segment claimed from `interrupted` has no journal
-- yet. With p_state, the state being resumed replaces the row's (its approvals for
-- every later call of a tool, which decisions per call cannot hold). Callers that pass
-- neither (js/index.mjs) are unchanged.
DROP FUNCTION timestep_claim_run(text, bigint, text, double precision);
CREATE FUNCTION timestep_claim_run(
    p_run_id text, p_row_id bigint, p_owner text, p_lease_seconds double precision,
    p_decisions jsonb DEFAULT NULL, p_state json DEFAULT NULL, p_state_js json DEFAULT NULL,
    p_conversion_error text DEFAULT NULL)
RETURNS TABLE (claimed boolean, active_id bigint, status text, lease_owner text, lease_expires_at timestamptz,
               claimed_from text)
LANGUAGE plpgsql AS $fn$
DECLARE r run_states%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    SELECT * INTO r FROM run_states s WHERE s.run_id = p_run_id AND s.active FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF (p_row_id IS NULL OR r.id = p_row_id)
       AND (r.status IN ('interrupted', 'failed')
            OR (r.status = 'running' AND r.lease_expires_at < clock_timestamp())) THEN
        UPDATE run_states s SET status = 'running', lease_owner = p_owner, error = NULL,
            lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
            resumed_at = clock_timestamp()
        WHERE s.id = r.id;
        IF p_decisions IS NOT NULL AND NOT (jsonb_typeof(r.decisions) = 'object' AND r.decisions @> p_decisions) THEN
            UPDATE run_states s SET decisions = s.decisions || p_decisions WHERE s.id = r.id;
        END IF;
        IF p_state IS NOT NULL THEN
            UPDATE run_states s SET state = p_state, state_js = p_state_js, conversion_error = p_conversion_error
            WHERE s.id = r.id;
        END IF;
        RETURN QUERY SELECT true, r.id, 'running'::text, p_owner,
            clock_timestamp() + make_interval(secs => p_lease_seconds), r.status;
        RETURN;
    END IF;
    RETURN QUERY SELECT false, r.id, r.status, r.lease_owner, r.lease_expires_at, NULL::text;
END
$fn$;

-- timestep_claim_runs, passing over a row whose decisions are not a JSON object (written
-- by hand or by another program: `timestep runs show` names the problem) instead of
-- failing every worker's claim on it.
CREATE OR REPLACE FUNCTION timestep_claim_runs(p_owner text, p_lease_seconds double precision, p_limit integer)
RETURNS TABLE (run_id text, id bigint) LANGUAGE sql AS $fn$
    WITH workable AS (
        SELECT s.id FROM run_states s
        WHERE s.active AND (
            (s.status = 'interrupted' AND s.pending_approvals > 0
             AND jsonb_typeof(s.decisions) = 'object'
             AND (SELECT count(*) FROM jsonb_object_keys(
                    CASE WHEN jsonb_typeof(s.decisions) = 'object' THEN s.decisions ELSE '{}' END))
                 >= s.pending_approvals)
            OR (s.status = 'running' AND s.lease_expires_at < clock_timestamp()))
        ORDER BY s.created_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    UPDATE run_states r SET status = 'running', lease_owner = p_owner, error = NULL,
        lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
        resumed_at = clock_timestamp()
    FROM workable w WHERE r.id = w.id
    RETURNING r.run_id, r.id;
$fn$;

-- Delete the journals of segments that will never run again (a later save replaced
-- them, or the run finished) whose steps are older than p_older_than; return how many
-- steps were deleted. A segment that is running, interrupted or failed keeps its
-- journal: a recovery or a retry replays it.
CREATE FUNCTION timestep_prune_run_steps(p_older_than interval)
RETURNS bigint LANGUAGE sql AS $fn$
    WITH pruned AS (
        DELETE FROM run_steps j USING run_states s
        WHERE s.id = j.state_id AND j.created_at < clock_timestamp() - p_older_than
          AND (NOT s.active OR s.status = 'finished')
        RETURNING 1)
    SELECT count(*) FROM pruned;
$fn$;
