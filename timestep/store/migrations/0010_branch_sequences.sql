-- Sequence numbers are counted per branch, not per session: (session, branch, sequence)
-- stays unique, and every query that reads structure rows names the branch. So the
-- (session_id, sequence_number) index goes, and with it the planner's temptation to
-- read a branch through it and throw the other branches' rows away (it did, on fresh
-- tables without statistics, which PGlite's always are). A new branch keeps its source's
-- sequence numbers: the copy no longer renumbers (and sorts) its rows.
DROP INDEX message_structure_session_seq;
CREATE OR REPLACE FUNCTION timestep_create_branch(p_session text, p_source text, p_turn integer, p_name text, p_epoch bigint)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    v_branch text;
    v_suffix integer := 1;
BEGIN
    PERFORM 1 FROM agent_sessions WHERE session_id = p_session FOR UPDATE;
    PERFORM 1 FROM message_structure
     WHERE session_id = p_session AND branch_id = p_source AND branch_turn_number = p_turn AND message_type = 'user';
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('Turn %s does not contain a user message in branch %L', p_turn, p_source);
    END IF;
    -- Branches other than "main" were reserved when created: reserve the two that may not be.
    INSERT INTO branch_reservations (session_id, branch_id)
        SELECT p_session, b.branch_id FROM (VALUES (p_source), ('main')) AS b (branch_id)
        WHERE EXISTS (SELECT 1 FROM message_structure WHERE session_id = p_session AND branch_id = b.branch_id)
        ON CONFLICT DO NOTHING;
    IF p_name IS NOT NULL THEN
        v_branch := p_name;
        INSERT INTO branch_reservations (session_id, branch_id) VALUES (p_session, v_branch) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = '23505',
                MESSAGE = format('Branch ID %L has already been used. Choose a new branch ID.', p_name);
        END IF;
    ELSE
        v_branch := format('branch_from_turn_%s_%s', p_turn, p_epoch);
        LOOP
            INSERT INTO branch_reservations (session_id, branch_id) VALUES (p_session, v_branch) ON CONFLICT DO NOTHING;
            EXIT WHEN FOUND;
            v_suffix := v_suffix + 1;
            v_branch := format('branch_from_turn_%s_%s_%s', p_turn, p_epoch, v_suffix);
        END LOOP;
    END IF;
    INSERT INTO message_structure
        (session_id, message_id, branch_id, message_type, sequence_number, user_turn_number, branch_turn_number, tool_name)
    SELECT session_id, message_id, v_branch, message_type, sequence_number, user_turn_number, branch_turn_number, tool_name
    FROM message_structure
    WHERE session_id = p_session AND branch_id = p_source AND branch_turn_number < p_turn;
    RETURN v_branch;
END
$fn$;
