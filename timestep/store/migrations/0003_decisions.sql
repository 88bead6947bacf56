-- Approvals and rejections recorded without the agent graph (timestep runs approve /
-- reject): call id -> {"approved": true} or {"approved": false, "message": ...}.
-- RunStateStore.load() applies them with the SDK's own approve() / reject().
ALTER TABLE run_states ADD COLUMN decisions jsonb NOT NULL DEFAULT '{}';
