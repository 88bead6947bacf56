// One PGlite database as the sidecar's clients see it: requests run one at a time, in arrival
// order, each isolated from the others (isolation.mjs), each answered only once what it wrote
// is on stable storage (durability.mjs).
import { concat, collect, isStale, PreparedStatements } from './wire.mjs';
import {
  DEFAULT_SETUP,
  RESET_AFTER_REQUEST,
  RESET_AFTER_SCRIPT,
  RESET_ROLE,
  droppedPrepared,
  maySetRole,
  refusal,
} from './isolation.mjs';

const resultReply = (id, result) => ({
  type: 'result',
  id,
  names: result.names,
  types: result.types,
  rows: result.rows,
  affected: result.affected,
});

export function errorReply(id, err, index) {
  const reply = { type: 'error', id, code: err?.code || 'internal', message: String(err?.message ?? err) };
  if (err?.detail) reply.detail = err.detail;
  if (err?.hint) reply.hint = err.hint;
  if (index !== undefined) reply.index = index;
  return reply;
}

// Worded as timestep/store/postgres.py words it.
const OPEN_TRANSACTION =
  'the script ended inside a transaction, which was rolled back: a Store call is a transaction ' +
  'of its own. End the script with COMMIT, or run statements that belong together with execute_batch';

/** PGlite itself failed (not a SQL error): the database cannot be trusted to go on. */
export class DatabaseBroken extends Error {}

export class Database {
  #pg;
  #wire;
  #walSync;
  #activity;
  #prepared = new PreparedStatements();
  #setup = DEFAULT_SETUP; // the search_path setup in force: every request ends with RESET ALL
  writes = 0; // requests that committed something (in memory: all requests), for maintenance.mjs

  /**
   * `walSync`: a durability.mjs WalSync (a directory), or null (in memory: nothing to sync).
   * `activity(owner)`: told when a request of the owner (true), of another client (false) or
   * none (null) is running in PGlite, for the watchdog.
   */
  constructor(pg, wire, { walSync = null, activity = () => {} } = {}) {
    this.#pg = pg;
    this.#wire = wire;
    this.#walSync = walSync;
    this.#activity = activity;
  }

  /** Run a validated query, batch or exec request; resolve with its reply once it may be sent. */
  async run(request, owner) {
    const { reply, mark } = await this.#pg.runExclusive(async () => {
      // A sync in progress frees replies when it completes, which needs a turn of the event
      // loop: take one before running anything (a long statement would hold those replies).
      if (this.#walSync?.syncing) await new Promise(setImmediate);
      this.#activity(owner);
      if (this.#walSync) this.#walSync.relaxed = Boolean(request.relaxed);
      try {
        const before = this.#walSync?.commits;
        const reply = await this.#runNow(request);
        // In memory nothing is synced, so nothing says what wrote: count every request.
        if (this.#walSync?.commits !== before || !this.#walSync) this.writes += 1;
        return { reply, mark: this.#walSync?.mark() ?? 0 };
      } finally {
        this.#activity(null);
        if (this.#walSync) this.#walSync.relaxed = false;
      }
    });
    if (this.#walSync && !request.relaxed) await this.#walSync.durable(mark);
    return reply;
  }

  /** Run trusted SQL of the sidecar's own (maintenance) between requests. */
  async runInternal(sql) {
    return this.#pg.runExclusive(async () => {
      const collected = await this.#execute([this.#wire.query(sql), this.#wire.query(RESET_AFTER_REQUEST)]);
      this.#setup = DEFAULT_SETUP;
      return collected;
    });
  }

  /** Sync what maintenance wrote, so that no later reply waits for it. */
  settle() {
    return this.#walSync?.durable(this.#walSync.mark());
  }

  async #runNow(request) {
    const { id } = request;
    switch (request.type) {
      case 'query': {
        const refused = refusal(request.sql, false);
        if (refused) return errorReply(id, { code: 'session_state', message: refused });
        const { results, error, status } = await this.#runStatements(request, (statement) => [
          ...statement(request.sql, request.params, request.types),
          this.#wire.sync(),
        ]);
        if (status !== 'I') return this.#rolledBack(id);
        return error ? errorReply(id, error) : resultReply(id, results[0]);
      }
      case 'batch': {
        for (const [index, [sql]] of request.statements.entries()) {
          const refused = refusal(sql, true);
          if (refused) return errorReply(id, { code: 'session_state', message: refused }, index);
        }
        // BEGIN; the statements; Sync; COMMIT. After a failure PostgreSQL skips to the
        // Sync, and the COMMIT of the failed transaction rolls it back.
        const { results, error, errorAt, status } = await this.#runStatements(
          request,
          (statement) => [
            this.#wire.query('BEGIN'),
            ...request.statements.flatMap(([sql, params, types]) => statement(sql, params, types)),
            this.#wire.sync(),
            this.#wire.query('COMMIT'),
          ],
          maySetRole(request.statements),
        );
        if (status !== 'I') return this.#rolledBack(id);
        const count = request.statements.length;
        if (error) {
          const index = errorAt - 1; // results[0] is BEGIN's
          return errorReply(id, error, index < count ? index : undefined);
        }
        return { type: 'batch_result', id, affected: results.slice(1, count + 1).map((r) => r.affected) };
      }
      case 'exec':
        return this.#runScript(request);
      default:
        throw new Error(`not a SQL request: ${request.type}`);
    }
  }

  /**
   * Run a query or batch: its setup when the session needs it, the messages `build` makes,
   * then the reset every request ends with. A query or batch that failed only because a
   * prepared statement went stale failed whole (a batch rolls back), so it runs once more,
   * with every statement parsed anew.
   */
  async #runStatements(request, build, resetRole = false) {
    const wire = this.#wire;
    for (let attempt = 0; ; attempt++) {
      const setup = request.setup ?? DEFAULT_SETUP;
      const skip = setup !== this.#setup ? 1 : 0;
      const statement = (sql, params, types) => this.#prepared.messages(wire, setup, sql, params, types);
      let collected;
      try {
        collected = await this.#execute([
          ...(skip ? [wire.query(setup)] : []),
          ...build(statement),
          ...(resetRole ? [wire.query(RESET_ROLE)] : []),
          wire.query(RESET_AFTER_REQUEST),
          ...this.#prepared.closing(wire),
        ]);
      } catch (err) {
        this.#prepared.failed();
        throw err;
      }
      this.#setup = DEFAULT_SETUP; // RESET ALL ran last
      if (droppedPrepared(collected.results.map((r) => r.tag))) this.#prepared.clear();
      if (!collected.error) {
        this.#prepared.succeeded();
      } else if (attempt === 0 && isStale(collected.error)) {
        this.#prepared.clear();
        continue;
      } else {
        this.#prepared.failed();
      }
      collected.results = collected.results.slice(skip);
      if (collected.errorAt !== undefined) collected.errorAt -= skip;
      return collected;
    }
  }

  /** A script: anything goes, as long as it ends with no transaction open; then reset it all. */
  async #runScript(request) {
    const wire = this.#wire;
    const setup = request.setup ?? DEFAULT_SETUP;
    const skip = setup !== this.#setup ? 1 : 0;
    let collected;
    try {
      collected = await this.#execute([...(skip ? [wire.query(setup)] : []), wire.query(request.sql)]);
    } finally {
      const tags = collected?.results.map((r) => r.tag) ?? [];
      const cleanup = [RESET_AFTER_SCRIPT, ...(tags.includes('PREPARE') ? ['DEALLOCATE ALL'] : [])];
      if (collected && collected.status !== 'I') await this.#execute([wire.query('ROLLBACK')]);
      await this.#execute([wire.query(cleanup.join('; '))]);
      this.#setup = DEFAULT_SETUP;
      if (tags.includes('PREPARE') || droppedPrepared(tags)) this.#prepared.clear();
    }
    if (collected.status !== 'I') return errorReply(request.id, { code: 'open_transaction', message: OPEN_TRANSACTION });
    const { results, error } = collected;
    if (error) return errorReply(request.id, error);
    const own = results.slice(skip);
    const last = own.at(-1) ?? { names: [], types: [], rows: [], affected: 0 };
    return { ...resultReply(request.id, last), affected: own.reduce((n, r) => n + r.affected, 0) };
  }

  /** The request's transaction was left open (it cannot be, short of a bug): roll it back. */
  async #rolledBack(id) {
    await this.#execute([this.#wire.query('ROLLBACK'), this.#wire.query(RESET_AFTER_SCRIPT)]);
    return errorReply(id, { code: 'open_transaction', message: OPEN_TRANSACTION });
  }

  async #execute(parts) {
    let messages;
    try {
      // syncToFs: false skips a no-op: on a Node directory (and in memory) PostgreSQL's
      // writes go straight to the files; PGlite's sync step only matters for browser
      // filesystems. Durability is durability.mjs's job.
      ({ messages } = await this.#pg.execProtocol(concat(parts), { throwOnError: false, syncToFs: false }));
    } catch (err) {
      throw new DatabaseBroken(`PGlite failed: ${err?.message ?? err}`);
    }
    return collect(messages);
  }
}
