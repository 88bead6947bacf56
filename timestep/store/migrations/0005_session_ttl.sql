-- Session time to live, beside agent_sessions (which keeps the SDK's exact layout): a
-- row for each session created with a ttl; each write moves `expires_at` on. An expired
-- session reads as empty and is deleted (with its items) by purge_expired().
CREATE TABLE session_ttl (
    session_id text PRIMARY KEY REFERENCES agent_sessions (session_id) ON DELETE CASCADE,
    ttl interval NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX session_ttl_expires_at ON session_ttl (expires_at);

-- AdvancedSession: the SDK's AdvancedSQLiteSession tables in PostgreSQL types. Each
-- message of a session appears once per branch that holds it (branches share messages).
-- Rows go with their message (and so with their session): no second foreign key to
-- check on each of the hundreds of rows a branch copies.
CREATE TABLE message_structure (
    id bigserial PRIMARY KEY,
    session_id text NOT NULL,
    message_id bigint NOT NULL REFERENCES agent_messages (id) ON DELETE CASCADE,
    branch_id text NOT NULL DEFAULT 'main',
    message_type text NOT NULL,
    sequence_number integer NOT NULL,
    user_turn_number integer,
    branch_turn_number integer,
    tool_name text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_structure_session_seq ON message_structure (session_id, sequence_number);
CREATE INDEX message_structure_branch_seq ON message_structure (session_id, branch_id, sequence_number);
CREATE INDEX message_structure_message ON message_structure (message_id);
CREATE TABLE turn_usage (
    id bigserial PRIMARY KEY,
    session_id text NOT NULL REFERENCES agent_sessions (session_id) ON DELETE CASCADE,
    branch_id text NOT NULL DEFAULT 'main',
    user_turn_number integer NOT NULL,
    requests integer NOT NULL DEFAULT 0,
    input_tokens integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    total_tokens integer NOT NULL DEFAULT 0,
    input_tokens_details jsonb,
    output_tokens_details jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, branch_id, user_turn_number)
);
-- Every branch id a session has used, kept when the branch or the session is deleted,
-- so a stale session object can never write into a later branch of the same name.
CREATE TABLE branch_reservations (
    session_id text NOT NULL,
    branch_id text NOT NULL,
    PRIMARY KEY (session_id, branch_id)
);

-- Branch creation in one transaction: check the turn, reserve the id, copy the
-- structure rows of the turns before it. Raises P0002 (no such user turn) or 23505
-- (the id was used before); nothing is written then.
CREATE FUNCTION timestep_create_branch(p_session text, p_source text, p_turn integer, p_name text, p_epoch bigint)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    v_branch text;
    v_suffix integer := 1;
    v_seq integer;
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
    SELECT coalesce(max(sequence_number), 0) INTO v_seq FROM message_structure WHERE session_id = p_session;
    INSERT INTO message_structure
        (session_id, message_id, branch_id, message_type, sequence_number, user_turn_number, branch_turn_number, tool_name)
    SELECT session_id, message_id, v_branch, message_type, v_seq + row_number() OVER (ORDER BY sequence_number),
           user_turn_number, branch_turn_number, tool_name
    FROM message_structure
    WHERE session_id = p_session AND branch_id = p_source AND branch_turn_number < p_turn;
    RETURN v_branch;
END
$fn$;
