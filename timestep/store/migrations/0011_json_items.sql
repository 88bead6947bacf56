-- Session items are `json`: the text the session wrote (Python's json.dumps of each
-- item, as the SDK's SQLiteSession stores it), kept as written. Items are stored and
-- read whole; reading them back no longer turns binary jsonb into text, a third of the
-- time of reading a 500-item branch on PostgreSQL, and writing no longer parses them
-- into jsonb. The `->`/`->>` operators work as before; containment (`@>`) needs a cast
-- to jsonb.
ALTER TABLE agent_messages ALTER COLUMN message_data TYPE json USING message_data::json;
