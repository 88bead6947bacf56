-- timestep_claim_run records the state being resumed when only its JavaScript form is
-- given (p_state_js, p_state NULL): js/index.mjs passes it when the state holds an
-- approval or rejection of every later call of a tool, and Python reads it by
-- converting the JavaScript form, as it reads a JavaScript save.
CREATE OR REPLACE FUNCTION timestep_claim_run(
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
        IF p_state IS NOT NULL OR p_state_js IS NOT NULL THEN
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
