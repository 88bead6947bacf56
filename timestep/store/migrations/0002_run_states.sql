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
