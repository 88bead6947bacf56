"""Versioned migrations, recorded in `timestep_schema`, applied once when a store opens.

Each migration runs inside one transaction holding an advisory lock, and is skipped if its
version is already recorded, so two processes opening a new database at once apply it once.
A migration is plain PostgreSQL; it must never be edited once released: add a new one.
"""

from __future__ import annotations

import hashlib

from ..errors import UndefinedTable
from .base import Store

# 'timestep' as a 64-bit integer: the advisory lock every migrating process takes.
MIGRATION_LOCK = int.from_bytes(b"timestep", "big")
# Its statement, first in every batch that creates schemas, tables or extensions.
LOCK_MIGRATIONS: tuple[str, list[object]] = ("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK])

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE agent_sessions (
            session_id text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE agent_messages (
            id bigserial PRIMARY KEY,
            session_id text NOT NULL REFERENCES agent_sessions (session_id) ON DELETE CASCADE,
            message_data jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX agent_messages_session_id_id ON agent_messages (session_id, id);
        """,
    ),
    (
        2,
        """
        CREATE TABLE run_states (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL,
            agent_name text NOT NULL,
            status text NOT NULL,
            pending_approvals integer NOT NULL,
            sdk text NOT NULL,
            schema_version text NOT NULL,
            state jsonb NOT NULL,
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            resumed_at timestamptz
        );
        CREATE UNIQUE INDEX run_states_one_active ON run_states (run_id) WHERE active;
        CREATE INDEX run_states_run_id_id ON run_states (run_id, id);
        """,
    ),
    (
        3,
        """
        -- Approvals and rejections recorded without the agent graph (timestep runs approve /
        -- reject): call id -> {"approved": true} or {"approved": false, "message": ...}.
        -- RunStateStore.load() applies them with the SDK's own approve() / reject().
        ALTER TABLE run_states ADD COLUMN decisions jsonb NOT NULL DEFAULT '{}';
        """,
    ),
    (
        4,
        """
        -- Cross-language runs. `sdk` says which SDK wrote the row ('python' or 'javascript'),
        -- `sdk_version` which release. `state` is the Python form, `state_js` the JavaScript
        -- form: the writer's own JSON, plus the other language's when the writer can convert
        -- (Python converts on save; a JavaScript save leaves `state` NULL and Python converts
        -- on load). `conversion_error` says why a Python save has no `state_js`.
        ALTER TABLE run_states ALTER COLUMN state DROP NOT NULL;
        ALTER TABLE run_states ADD COLUMN state_js jsonb;
        ALTER TABLE run_states ADD COLUMN sdk_version text;
        ALTER TABLE run_states ADD COLUMN conversion_error text;
        ALTER TABLE run_states ADD CONSTRAINT run_states_has_state CHECK (state IS NOT NULL OR state_js IS NOT NULL);
        """,
    ),
    (
        5,
        """
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
        """,
    ),
    (
        6,
        """
        -- Agent memory (timestep.memory): facts and episodes, each in a scope ('global',
        -- 'user:<id>' or 'agent:<name>'), ranked by PostgreSQL full-text search.
        CREATE TABLE memory_facts (
            id bigserial PRIMARY KEY,
            scope text NOT NULL,
            text text NOT NULL,
            subject text,
            tags text[] NOT NULL DEFAULT '{}',
            source_session text,
            source_run text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            search tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', coalesce(subject, '')), 'A') || to_tsvector('english', text)
            ) STORED
        );
        CREATE INDEX memory_facts_search ON memory_facts USING gin (search);
        CREATE INDEX memory_facts_scope_updated ON memory_facts (scope, updated_at DESC);
        CREATE INDEX memory_facts_tags ON memory_facts USING gin (tags);
        CREATE TABLE memory_episodes (
            id bigserial PRIMARY KEY,
            scope text NOT NULL,
            summary text NOT NULL,
            session_id text,
            run_id text,
            outcome text,
            created_at timestamptz NOT NULL DEFAULT now(),
            search tsvector GENERATED ALWAYS AS (to_tsvector('english', summary)) STORED
        );
        CREATE INDEX memory_episodes_search ON memory_episodes USING gin (search);
        CREATE INDEX memory_episodes_scope_created ON memory_episodes (scope, created_at DESC);
        """,
    ),
    (
        7,
        """
        -- Saved states are stored and read whole, never queried inside: `json` keeps the text
        -- as the SDK wrote it (key order included) and costs half of `jsonb` to write and read.
        ALTER TABLE run_states ALTER COLUMN state TYPE json USING state::json;
        ALTER TABLE run_states ALTER COLUMN state_js TYPE json USING state_js::json;
        """,
    ),
    (
        8,
        """
        -- Creating a branch copies hundreds of structure rows in one statement: two per-row
        -- costs go. A row's key is (session_id, branch_id, sequence_number), the index branch
        -- reads use, instead of a serial id with an index of its own; and a row no longer checks
        -- a foreign key on its message: deleting messages deletes their rows through a
        -- statement trigger. (Sequence numbers are unique in a session by construction.)
        ALTER TABLE message_structure DROP COLUMN id;
        ALTER TABLE message_structure DROP CONSTRAINT message_structure_message_id_fkey;
        DROP INDEX message_structure_branch_seq;
        ALTER TABLE message_structure ADD PRIMARY KEY (session_id, branch_id, sequence_number);
        CREATE FUNCTION timestep_drop_structure_of_messages() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM message_structure s USING gone WHERE s.message_id = gone.id;
            RETURN NULL;
        END
        $fn$;
        CREATE TRIGGER agent_messages_drop_structure AFTER DELETE ON agent_messages
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION timestep_drop_structure_of_messages();
        """,
    ),
    (
        9,
        """
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
        """,
    ),
    (
        10,
        """
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
        """,
    ),
    (
        11,
        """
        -- Session items are `json`: the text the session wrote (Python's json.dumps of each
        -- item, as the SDK's SQLiteSession stores it), kept as written. Items are stored and
        -- read whole; reading them back no longer turns binary jsonb into text, a third of the
        -- time of reading a 500-item branch on PostgreSQL, and writing no longer parses them
        -- into jsonb. The `->`/`->>` operators work as before; containment (`@>`) needs a cast
        -- to jsonb.
        ALTER TABLE agent_messages ALTER COLUMN message_data TYPE json USING message_data::json;
        """,
    ),
    (
        12,
        """
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
        """,
    ),
    (
        13,
        """
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
        """,
    ),
    (
        14,
        """
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
        """,
    ),
    (
        15,
        """
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
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]
# Names the tables the migrations make: a template data directory made with them is reused
# only while they are unchanged.
SCHEMA_KEY = f"{LATEST}-" + hashlib.sha256(repr(MIGRATIONS).encode()).hexdigest()[:12]


async def current_version(store: Store) -> int:
    """The highest migration applied to this database (0 for a new one)."""
    try:
        return int(await store.fetchval("SELECT coalesce(max(version), 0) FROM timestep_schema"))
    except UndefinedTable:
        return 0


async def migrate(store: Store) -> int:
    """Apply every migration this database lacks; return the version it is now at."""
    applied = await current_version(store)
    if applied >= LATEST:
        return applied
    statements: list[tuple[str, list[object]]] = [
        LOCK_MIGRATIONS,
        (
            "CREATE TABLE IF NOT EXISTS timestep_schema ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())",
            [],
        ),
    ]
    for version, sql in MIGRATIONS:
        if version > applied:
            statements.append(
                (
                    "DO $migration$ BEGIN"
                    f" IF NOT EXISTS (SELECT 1 FROM timestep_schema WHERE version = {version}) THEN"
                    f" {sql}"
                    f" INSERT INTO timestep_schema (version) VALUES ({version});"
                    " END IF; END $migration$",
                    [],
                )
            )
    await store.execute_batch(statements)
    return LATEST
