-- A worker (Python) cannot replay a segment the JavaScript SDK journaled: timestep_claim_runs
-- leaves a run whose process died while JavaScript ran it to JavaScript's recover(), instead of
-- taking it only to record it failed.
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
            OR (s.status = 'running' AND s.lease_expires_at < clock_timestamp()
                AND NOT EXISTS (SELECT 1 FROM run_steps j WHERE j.state_id = s.id AND j.kind <> 'session'
                                AND j.payload ->> 'sdk' = 'javascript')))
        ORDER BY s.created_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    UPDATE run_states r SET status = 'running', lease_owner = p_owner, error = NULL,
        lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
        resumed_at = clock_timestamp()
    FROM workable w WHERE r.id = w.id
    RETURNING r.run_id, r.id;
$fn$;
