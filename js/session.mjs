// `Session`: the JS Agents SDK's session interface on timestep's `agent_sessions` and
// `agent_messages` tables, the ones Python's `timestep.Session` uses, so one conversation is
// continued by either SDK.
//
// Items are stored as Python stores them: the Responses API's input items (`call_id`,
// `function_call_output`), which both SDKs send to the model. This SDK's items are converted on
// the way in and out with the JS SDK's own Responses converters (those its
// OpenAIConversationsSession uses to keep a conversation in the same format on OpenAI's side).
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Database, OID } from './backend.mjs';
import { activeJournal } from './journal.mjs';

// The statements of timestep/session.py. An expired session reads as empty, and a write to it
// first deletes its old items; a write moves its expiry on ($3: this object's ttl, else the
// ttl the session was created with).
const EXPIRED = 'SELECT session_id FROM session_ttl WHERE expires_at <= now()';
const LIVE = 'coalesce((SELECT expires_at > now() FROM session_ttl WHERE session_id = $1), true)';
const REFRESH_TTL = (onlyIf) => `
    ttl_set AS (
        INSERT INTO session_ttl (session_id, ttl, expires_at)
        SELECT $1, $3::interval, now() + $3::interval WHERE $3::interval IS NOT NULL ${onlyIf}
        ON CONFLICT (session_id) DO UPDATE SET ttl = excluded.ttl, expires_at = excluded.expires_at
    ),
    ttl_kept AS (
        UPDATE session_ttl SET expires_at = now() + ttl WHERE session_id = $1 AND $3::interval IS NULL ${onlyIf}
    )`;
const ADD_ITEMS = `
    WITH expired AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND session_id IN (${EXPIRED})
    ),
    session AS (
        INSERT INTO agent_sessions (session_id) VALUES ($1)
        ON CONFLICT (session_id) DO UPDATE SET updated_at = now()
        RETURNING session_id
    ),
    ${REFRESH_TTL('')}
    INSERT INTO agent_messages (session_id, message_data)
    SELECT session.session_id, items.item
    FROM session, json_array_elements($2::json) WITH ORDINALITY AS items (item, n)
    ORDER BY items.n`;
// A durable run's write (js/journal.mjs): only while the run's row ($4) is held by its owner
// ($5), and journaled by the same statement with the ids of the items it added ($6 the write's
// number, $7 the journal's sequence). Nothing is written, and false returned, once it is not.
const ADD_ITEMS_JOURNALED = `
    WITH held AS (
        SELECT s.run_id FROM run_states s
        WHERE s.id = $4 AND s.active AND s.status = 'running' AND s.lease_owner = $5 FOR SHARE
    ),
    expired AS (
        DELETE FROM agent_messages WHERE session_id = $1 AND session_id IN (${EXPIRED}) AND EXISTS (SELECT 1 FROM held)
    ),
    session AS (
        INSERT INTO agent_sessions (session_id) SELECT $1 FROM held
        ON CONFLICT (session_id) DO UPDATE SET updated_at = now()
        RETURNING session_id
    ),
    ${REFRESH_TTL('AND EXISTS (SELECT 1 FROM held)')},
    added AS (
        INSERT INTO agent_messages (session_id, message_data)
        SELECT session.session_id, items.item
        FROM session, held, json_array_elements($2::json) WITH ORDINALITY AS items (item, n)
        ORDER BY items.n
        RETURNING id
    ),
    journaled AS (
        INSERT INTO run_steps (run_id, state_id, kind, turn, seq, payload)
        SELECT held.run_id, $4, 'session', $6, $7,
               json_build_object('session_id', $1::text, 'ids', (SELECT json_agg(id) FROM added))
        FROM held
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM journaled) AS journaled`;
const ITEMS = (ordered) => `SELECT '[' || coalesce(string_agg(items.message_data::text, ','), '') || ']' AS items FROM (${ordered}) AS items`;
const ALL_ITEMS = ITEMS(`SELECT message_data FROM agent_messages WHERE session_id = $1 AND ${LIVE} ORDER BY id`);
const LATEST_ITEMS = ITEMS(`
    SELECT message_data FROM (
        SELECT id, message_data FROM agent_messages WHERE session_id = $1 AND ${LIVE} ORDER BY id DESC LIMIT $2
    ) AS latest ORDER BY id`);
const POP_ITEM = `
    DELETE FROM agent_messages WHERE id = (
        SELECT id FROM agent_messages WHERE session_id = $1 AND ${LIVE}
        ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING message_data`;
// The session and its items (and its expiry), in one statement.
const CLEAR = `
    WITH messages AS (DELETE FROM agent_messages WHERE session_id = $1)
    DELETE FROM agent_sessions WHERE session_id = $1`;

// The JS SDK's Responses converters: getInputItems (its items -> the Responses API's input
// items) and convertToOutputItem (the API's output items -> its items). @openai/agents-openai
// exports them to its own modules only, so they are loaded from the file beside its entry point.
const converters = await (async () => {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@openai/agents-openai', { paths: [path.dirname(require.resolve('@openai/agents'))] });
  const file = path.join(path.dirname(entry), 'openaiResponsesConverter.mjs');
  return import(pathToFileURL(file).href);
})();

/**
 * A conversation's items in timestep's database: PostgreSQL (`connectionString`, else
 * PG_CONNECTION_URI) or the embedded PGlite (`pgliteDir`, else TIMESTEP_PGLITE_DIR, else the
 * default directory). `ttl`: seconds of inactivity after which the session reads as empty.
 */
export class Session {
  #database;

  constructor({ sessionId, connectionString, pgliteDir, ttl = null } = {}) {
    if (ttl !== null && !(typeof ttl === 'number' && ttl > 0)) throw new TypeError(`ttl must be a positive number of seconds or null, not ${ttl}`);
    this.sessionId = sessionId ?? crypto.randomUUID();
    this.ttl = ttl;
    this.#database = new Database({ connectionString, pgliteDir });
  }

  /** Which database the session is in (a URI, or `pglite:` and its directory). */
  get target() {
    return this.#database.target;
  }

  async getSessionId() {
    return this.sessionId;
  }

  /** The latest `limit` items (all when omitted), oldest first, as this SDK's items. */
  async getItems(limit) {
    if (limit !== undefined && limit !== null && limit <= 0) return [];
    const db = await this.#database.db();
    const { rows } =
      limit === undefined || limit === null
        ? await db.query(ALL_ITEMS, [this.sessionId], [OID.text])
        : await db.query(LATEST_ITEMS, [this.sessionId, String(limit)], [OID.text, OID.int8]);
    return fromStored(JSON.parse(rows[0].items));
  }

  /** Append items, atomically, in one statement. */
  async addItems(items) {
    if (!items.length) return;
    const stored = JSON.stringify(toStored(items));
    const ttl = this.ttl === null ? null : `${this.ttl} seconds`;
    const db = await this.#database.db();
    const journal = activeJournal();
    if (journal?.journalsSession(this)) {
      const [stateId, owner, write, seq] = journal.sessionWriteParams();
      const { rows } = await db.query(
        ADD_ITEMS_JOURNALED,
        [this.sessionId, stored, ttl, String(stateId), owner, String(write), String(seq)],
        [OID.text, OID.json, OID.text, OID.int8, OID.text, OID.int4, OID.int4],
      );
      journal.sessionWritten(rows[0].journaled);
      return;
    }
    await db.query(ADD_ITEMS, [this.sessionId, stored, ttl], [OID.text, OID.json, OID.text]);
  }

  /** Remove and return the newest item; undefined when the session is empty. */
  async popItem() {
    const db = await this.#database.db();
    const { rows } = await db.query(POP_ITEM, [this.sessionId], [OID.text]);
    return rows.length ? fromStored([rows[0].message_data])[0] : undefined;
  }

  /** Delete the session and its items. */
  async clearSession() {
    const db = await this.#database.db();
    await db.query(CLEAR, [this.sessionId], [OID.text]);
  }

  /** Close the connection; the session reconnects if used again. */
  async close() {
    await this.#database.close();
  }
}

/** This SDK's items as Python stores them (the Responses API's input items). Not part of the module's API. */
export function toStored(items) {
  return converters.getInputItems(items).map((item) => {
    const { providerData: _providerData, provider_data: _provider_data, ...rest } = item;
    return rest;
  });
}

/** Stored items as this SDK's items; an output names its function from the call before it. */
export function fromStored(stored) {
  const names = new Map();
  return stored.map((item) => {
    if (item.type === 'function_call') names.set(item.call_id, item.name);
    if (item.role === 'user' || item.role === 'system' || item.role === 'developer') return messageOf(item);
    if (item.role === 'assistant' && typeof item.content === 'string') {
      // An assistant message given as text (Python keeps input items as they were given).
      const text = { type: 'output_text', text: item.content };
      return { ...(item.id ? { id: item.id } : {}), type: 'message', role: 'assistant', status: item.status ?? 'completed', content: [text] };
    }
    const [converted] = converters.convertToOutputItem([item]);
    if (converted?.type === 'function_call_result' && names.has(item.call_id) && !item.name) converted.name = names.get(item.call_id);
    if (converted && converted.providerData && !Object.keys(converted.providerData).length) delete converted.providerData;
    return converted;
  });
}

/** A stored user, system or developer message as this SDK's message. */
function messageOf(item) {
  const message = { type: 'message', role: item.role === 'developer' ? 'system' : item.role, content: item.content };
  if (item.id) message.id = item.id;
  if (item.role === 'user' && Array.isArray(item.content)) message.content = item.content.map(inputPartOf);
  if (item.role !== 'user' && Array.isArray(item.content)) message.content = item.content.map((part) => part.text ?? '').join('');
  if (item.role === 'developer') message.providerData = { role: 'developer' };
  return message;
}

function inputPartOf(part) {
  if (part.type === 'input_image') {
    const image = part.image_url ?? (part.file_id ? { id: part.file_id } : undefined);
    return { type: 'input_image', image, ...(part.detail ? { providerData: { detail: part.detail } } : {}) };
  }
  if (part.type === 'input_file') {
    const file = part.file_data ?? part.file_url ?? (part.file_id ? { id: part.file_id } : undefined);
    return { type: 'input_file', file, ...(part.filename ? { filename: part.filename } : {}) };
  }
  return part; // input_text: the same in both
}
