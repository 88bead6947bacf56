// timestep for JavaScript: the mirror of the Python API (`run_agent`, `consume_result`,
// `RunStateStore`) over the same tables, so a run paused by one SDK resumes in the other.
//
// Storage is PostgreSQL (through `pg`) or the embedded PGlite database, which JavaScript reaches
// only through the sidecar a running timestep process already serves on the directory's socket.
// The tables belong to the Python side's migrations (timestep/store/schema.py): this module
// reads and writes them, and never creates or alters them.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { run, RunState, StreamedRunResult } from '@openai/agents';
import pg from 'pg';
import { SidecarClient, defaultPgliteDir } from './sidecar-client.mjs';

const SDK = 'javascript';
const SCHEMA_VERSION = 12; // the migration of timestep/store/schema.py we need (its save function)
const CARRY = '$timestep'; // top-level key the Python converter keeps its own fields under

// PostgreSQL type OIDs of the parameters and results we handle.
const OID = { bool: 16, int8: 20, int4: 23, text: 25, json: 114, jsonb: 3802 };

// The save timestep/run_state.py makes (schema migration 12): the run's lock, its active row
// retired, the new one inserted, in one statement. Only the JavaScript form: no Python state
// and no conversion error.
const SAVE = 'SELECT timestep_save_run_state($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL)';
const ACTIVE = 'SELECT id, sdk, state_js, conversion_error, decisions FROM run_states WHERE run_id = $1 AND active';
const MARK_RESUMED = 'UPDATE run_states SET resumed_at = now() WHERE id = $1';
const DELETE = 'DELETE FROM run_states WHERE run_id = $1';
const SCHEMA = 'SELECT coalesce(max(version), 0) AS version FROM timestep_schema';

/** No saved state for a run. */
export class RunStateNotFound extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'RunStateNotFound';
  }
}

/** A saved state this SDK cannot resume (no JavaScript form, or RunState.fromString refused it). */
export class InvalidRunState extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'InvalidRunState';
  }
}

let sdkVersion; // computed once

/** "@openai/agents <version>", read from the installed package (its package.json is not exported, so walk up). */
function agentsVersion() {
  sdkVersion ??= readAgentsVersion();
  return sdkVersion;
}

function readAgentsVersion() {
  const require = createRequire(import.meta.url);
  for (let dir = path.dirname(require.resolve('@openai/agents')); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (pkg.name === '@openai/agents') return `@openai/agents ${pkg.version}`;
    }
    if (path.dirname(dir) === dir) return '@openai/agents unknown';
  }
}

/**
 * Run `agent` on `input` (text, input items, or a RunState to resume) with `session`.
 * Returns the SDK's result unchanged: a RunResult, or with `stream` a StreamedRunResult
 * (drain it with consumeResult). SDK errors propagate unchanged.
 */
export async function runAgent(agent, input, session, stream = false, options = {}) {
  const runOptions = { ...options, stream: Boolean(stream) };
  if (session != null) runOptions.session = session; // the SDK wants a Session or nothing
  return run(agent, input, runOptions);
}

/** Drain a streamed result's events and return it finished; return any other result as is. */
export async function consumeResult(result) {
  if (result instanceof StreamedRunResult) {
    for await (const _event of result.toStream()) {
      // events are not needed here; draining lets the run reach its end
    }
    await result.completed; // rejects with the run's error, if it failed
  }
  return result;
}

// --- Backends: the same calls over PostgreSQL and over the sidecar ---------------------------
// query(sql, params, types) -> { rows: [{column: value}], affected }; close()
// Params are PostgreSQL text (strings or null) for both; `types` only matter to the sidecar.

/** PostgreSQL through a pg.Pool. */
class PostgresBackend {
  constructor(connectionString) {
    this.pool = new pg.Pool({ connectionString, max: 4 });
    // An idle client losing its server must not crash the process; the next query reports it.
    this.pool.on('error', () => {});
  }

  async query(sql, params) {
    const result = await this.pool.query(sql, params);
    return { rows: result.rows, affected: result.rowCount ?? 0 };
  }

  async close() {
    await this.pool.end();
  }
}

/** One sidecar result value (PostgreSQL text) as JavaScript, by its type OID. */
function parseValue(text, oid) {
  if (text === null) return null;
  switch (oid) {
    case OID.json:
    case OID.jsonb:
      return JSON.parse(text);
    case OID.int4:
    case OID.int8:
      return Number(text);
    case OID.bool:
      return text === 't';
    default:
      return text;
  }
}

/** Embedded PGlite through the running sidecar's socket. */
class SidecarBackend {
  constructor(client) {
    this.client = client;
  }

  static async connect(dir) {
    return new SidecarBackend(await SidecarClient.connect(dir));
  }

  async query(sql, params, types) {
    const reply = await this.client.query(sql, params, types);
    const rows = reply.rows.map((row) => Object.fromEntries(reply.names.map((name, i) => [name, parseValue(row[i], reply.types[i])])));
    return { rows, affected: reply.affected };
  }

  async close() {
    await this.client.close();
  }
}

/** The backend the options (else the environment) name; mirrors open_store() in Python. */
async function openBackend({ connectionString, pgliteDir }) {
  if (connectionString && pgliteDir) throw new TypeError('give either connectionString or pgliteDir, not both');
  const uri = connectionString || (pgliteDir ? undefined : process.env.PG_CONNECTION_URI || undefined);
  if (uri) {
    if (!/^postgres(ql)?:\/\//.test(uri)) {
      throw new TypeError(`cannot open ${JSON.stringify(uri)}: use a postgresql:// URI, or none for the embedded PGlite`);
    }
    return new PostgresBackend(uri);
  }
  return SidecarBackend.connect(pgliteDir || defaultPgliteDir());
}

/** Refuse a database the Python side has not migrated to SCHEMA_VERSION: JavaScript never creates tables. */
async function checkSchema(backend) {
  let version = 0;
  try {
    version = (await backend.query(SCHEMA, [], [])).rows[0].version;
  } catch (err) {
    if (err.code !== '42P01') throw err; // undefined_table: a database timestep never opened
  }
  if (version < SCHEMA_VERSION) {
    throw new Error(
      `the database has no timestep tables at schema ${SCHEMA_VERSION} yet (it is at ${version}); ` +
        'open it once from Python (`timestep doctor`) to create them',
    );
  }
}

/** Saved states of one run (`sessionId`), resumable with `agent`'s graph. */
export class RunStateStore {
  #options;
  #backend = null; // a promise of the checked backend, made on first use

  constructor({ agent, sessionId, connectionString, pgliteDir } = {}) {
    if (!agent) throw new TypeError('RunStateStore needs { agent }: the graph saved states resume with');
    this.agent = agent;
    this.sessionId = sessionId ?? crypto.randomUUID();
    this.#options = { connectionString, pgliteDir };
  }

  /** Connect and check the schema once; a failed attempt is forgotten so the next call retries. */
  #db() {
    if (!this.#backend) {
      const attempt = (async () => {
        const backend = await openBackend(this.#options);
        try {
          await checkSchema(backend);
        } catch (err) {
          await backend.close().catch(() => {});
          throw err;
        }
        return backend;
      })();
      this.#backend = attempt;
      attempt.catch(() => {
        if (this.#backend === attempt) this.#backend = null;
      });
    }
    return this.#backend;
  }

  /** Save `state` as this run's active state, in one transaction; earlier saves stay as history. */
  async save(state) {
    if (!(state instanceof RunState)) {
      throw new TypeError(`RunStateStore.save() takes a RunState (from result.state), not ${state?.constructor?.name ?? typeof state}`);
    }
    const document = state.toJSON();
    const pending = state.getInterruptions().length;
    const agentName = document.currentAgent?.name ?? this.agent.name;
    const db = await this.#db();
    await db.query(
      SAVE,
      [
        this.sessionId,
        agentName,
        pending ? 'interrupted' : 'saved',
        String(pending),
        SDK,
        agentsVersion(),
        String(document.$schemaVersion ?? ''),
        JSON.stringify(document),
      ],
      [OID.text, OID.text, OID.text, OID.int4, OID.text, OID.text, OID.text, OID.json],
    );
  }

  /** The active saved state, with recorded approvals and rejections applied, ready to resume. */
  async load() {
    const db = await this.#db();
    const { rows } = await db.query(ACTIVE, [this.sessionId], [OID.text]);
    const row = rows[0];
    if (!row) {
      throw new RunStateNotFound(`no saved state for run ${JSON.stringify(this.sessionId)}; save one with RunStateStore.save(result.state)`);
    }
    const state = await this.#decode(row);
    const decisions = row.decisions ?? {};
    for (const item of state.getInterruptions()) {
      const decision = decisions[item.rawItem?.callId ?? ''];
      if (!decision) continue;
      if (decision.approved) state.approve(item);
      else state.reject(item, decision.message != null ? { message: decision.message } : undefined);
    }
    await db.query(MARK_RESUMED, [String(row.id)], [OID.int8]);
    return state;
  }

  /** A row's JavaScript document as a RunState of this store's agent graph. */
  async #decode(row) {
    const run = JSON.stringify(this.sessionId);
    if (row.state_js == null) {
      throw new InvalidRunState(
        `run ${run} was saved by the ${row.sdk} SDK and has no JavaScript form: ` +
          (row.conversion_error ?? 'no conversion error was recorded'),
      );
    }
    const document = row.state_js;
    if (typeof document !== 'object' || Array.isArray(document)) {
      throw new InvalidRunState(`the saved state of run ${run} is not a JSON object`);
    }
    const { [CARRY]: _carry, ...sdkDocument } = document; // Python-only fields: not for this SDK
    try {
      return await RunState.fromString(this.agent, JSON.stringify(sdkDocument));
    } catch (err) {
      throw new InvalidRunState(
        `cannot resume run ${run} (state $schemaVersion ${JSON.stringify(document.$schemaVersion)}, current agent ` +
          `${JSON.stringify(document.currentAgent?.name)}) with the graph of agent ${JSON.stringify(this.agent.name)}: ${err.message}`,
        { cause: err },
      );
    }
  }

  /** Delete every saved state of this run, history included; return how many rows went. */
  async clear() {
    const db = await this.#db();
    const { affected } = await db.query(DELETE, [this.sessionId], [OID.text]);
    return affected;
  }

  /** Close the connection (pool or sidecar socket); the store can be used again after, reconnecting. */
  async close() {
    const pending = this.#backend;
    this.#backend = null;
    if (!pending) return;
    let backend;
    try {
      backend = await pending;
    } catch {
      return; // never connected
    }
    await backend.close();
  }
}
