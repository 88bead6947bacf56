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
