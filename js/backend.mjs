// Where timestep's JavaScript module keeps its rows: PostgreSQL (through `pg`) or the embedded
// PGlite database, reached through the sidecar serving its directory. The same calls over both.
import pg from 'pg';
import { SidecarClient, defaultPgliteDir } from './sidecar-client.mjs';

const SCHEMA_VERSION = 15; // the migration of timestep/store/schema.py we need (the run lifecycle and its journal)
const SCHEMA = 'SELECT coalesce(max(version), 0) AS version FROM timestep_schema';

// PostgreSQL type OIDs of the parameters and results we handle.
export const OID = { bool: 16, int8: 20, int4: 23, text: 25, json: 114, float8: 701, jsonb: 3802 };

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

/**
 * One database, connected on first use and checked once: a failed attempt is forgotten, so the
 * next call retries. `options`: { connectionString, pgliteDir }, else the environment.
 */
export class Database {
  #options;
  #backend = null; // a promise of the checked backend

  constructor(options) {
    this.#options = options;
  }

  /** The checked backend: query(sql, params, types) -> { rows, affected }. */
  db() {
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

  /** Which database this is: its URI, or its PGlite directory (two stores on one compare equal). */
  get target() {
    const { connectionString, pgliteDir } = this.#options;
    return connectionString || (pgliteDir ? `pglite:${pgliteDir}` : process.env.PG_CONNECTION_URI || `pglite:${defaultPgliteDir()}`);
  }

  /** Close the connection; the next db() reconnects. */
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
