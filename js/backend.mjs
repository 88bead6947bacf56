// Where timestep's JavaScript module keeps its rows: PostgreSQL (through `pg`) or the embedded
// PGlite database, reached through the sidecar serving its directory. The same calls over both,
// and the same schema as Python's: the migration files of timestep/store/migrations, applied as
// timestep/store/schema.py applies them (one transaction, under the same advisory lock, each
// recorded in timestep_schema), so a Node-only project needs nothing from Python.
import fs from 'node:fs';
import pg from 'pg';
import { connectEmbedded } from './embedded.mjs';
import { defaultPgliteDir } from './sidecar-client.mjs';

const MIGRATIONS_DIR = new URL('../timestep/store/migrations/', import.meta.url);
// 'timestep' as a 64-bit integer: the advisory lock every migrating process takes (schema.py's).
const MIGRATION_LOCK = BigInt(`0x${Buffer.from('timestep').toString('hex')}`).toString();
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

  /** Run [sql, params] statements in one transaction: all take effect or none. */
  async batch(statements) {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      for (const [sql, params] of statements) await client.query(sql, params);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
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
    return new SidecarBackend(await connectEmbedded(dir));
  }

  async query(sql, params, types) {
    const reply = await this.client.query(sql, params, types);
    const rows = reply.rows.map((row) => Object.fromEntries(reply.names.map((name, i) => [name, parseValue(row[i], reply.types[i])])));
    return { rows, affected: reply.affected };
  }

  /** Run [sql, params, types] statements in one transaction: all take effect or none. */
  async batch(statements) {
    await this.client.batch(statements);
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

/** The migration files, in order: [version, sql]. */
function migrations() {
  return fs
    .readdirSync(MIGRATIONS_DIR)
    .filter((name) => /^\d+_.*\.sql$/.test(name))
    .map((name) => [Number(name.split('_', 1)[0]), fs.readFileSync(new URL(name, MIGRATIONS_DIR), 'utf8')])
    .sort(([a], [b]) => a - b);
}

/** Apply every migration the database lacks, as schema.py's migrate() does; return its version. */
async function migrate(backend) {
  let version = 0;
  try {
    version = (await backend.query(SCHEMA, [], [])).rows[0].version;
  } catch (err) {
    if (err.code !== '42P01') throw err; // undefined_table: a database timestep never opened
  }
  const missing = migrations().filter(([number]) => number > version);
  if (!missing.length) return version;
  await backend.batch([
    ['SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK], [OID.int8]],
    ['CREATE TABLE IF NOT EXISTS timestep_schema ( version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())', [], []],
    ...missing.map(([number, sql]) => [
      `DO $migration$ BEGIN IF NOT EXISTS (SELECT 1 FROM timestep_schema WHERE version = ${number}) THEN ${sql} ` +
        `INSERT INTO timestep_schema (version) VALUES (${number}); END IF; END $migration$`,
      [],
      [],
    ]),
  ]);
  return missing[missing.length - 1][0];
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
          await migrate(backend);
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
