-- Saved states are stored and read whole, never queried inside: `json` keeps the text
-- as the SDK wrote it (key order included) and costs half of `jsonb` to write and read.
ALTER TABLE run_states ALTER COLUMN state TYPE json USING state::json;
ALTER TABLE run_states ALTER COLUMN state_js TYPE json USING state_js::json;
