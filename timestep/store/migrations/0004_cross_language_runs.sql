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
