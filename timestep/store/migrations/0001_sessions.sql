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
