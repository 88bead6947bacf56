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
