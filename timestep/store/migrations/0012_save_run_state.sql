-- A run state's save as one statement: the run's lock, its active row retired, the new
-- row inserted, in one implicit transaction and one round trip. As separate
-- statements (BEGIN, lock, save, COMMIT) they were four round trips to PostgreSQL,
-- twice the time of this for a 10-turn run. Each statement of a plpgsql function sees
-- what committed before it began: the UPDATE, after the lock, sees a save of the same
-- run that committed while this one waited, and exactly one row stays active.
CREATE FUNCTION timestep_save_run_state(
    p_run_id text, p_agent_name text, p_status text, p_pending_approvals integer, p_sdk text,
    p_sdk_version text, p_schema_version text, p_state json, p_state_js json, p_conversion_error text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_run_id, 0));
    UPDATE run_states SET active = false WHERE run_id = p_run_id AND active;
    INSERT INTO run_states (run_id, agent_name, status, pending_approvals, sdk, sdk_version, schema_version,
                            state, state_js, conversion_error)
    VALUES (p_run_id, p_agent_name, p_status, p_pending_approvals, p_sdk, p_sdk_version, p_schema_version,
            p_state, p_state_js, p_conversion_error);
END
$fn$;
