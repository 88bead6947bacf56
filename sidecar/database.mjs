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
  #pending = 0; // requests received and not yet answered
  #setup = DEFAULT_SETUP; // the search_path setup in force: every request ends with RESET ALL
  writes = 0; // requests that committed something (in memory: all requests), for maintenance.mjs

  /**
   * `walSync`: a durability.mjs WalSync (a directory), or null (in memory: nothing to sync).
   * `activity(owner)`: told when a request of the owner (true), of another client (false) or
   * none (null) is running in PGlite, for the helper thread's watch on the owner.
   */
  constructor(pg, wire, { walSync = null, activity = () => {} } = {}) {
    this.#pg = pg;
    this.#wire = wire;
    this.#walSync = walSync;
    this.#activity = activity;
  }

  /**
   * Run a validated query, batch or exec request and hand its reply to `answer` once it may
   * be sent: at once, or, for a write, when its WAL is synced; then from inside the sync's
   * completion, so a reply never waits for a turn of the event loop (nor for a statement
   * that starts meanwhile). Rejects only when PGlite itself failed (DatabaseBroken).
   */
  async run(request, owner, answer) {
    this.#pending += 1;
    let outcome;
    try {
      outcome = await this.#pg.runExclusive(() => this.#runNow(request, owner));
    } catch (err) {
      this.#pending -= 1;
      throw err;
    }
    const { reply, mark } = outcome;
    const answered = () => {
      this.#pending -= 1;
      answer(reply);
    };
    if (!this.#walSync || request.relaxed) return answered();
    // Alone, a request has nothing to share its sync with, nor anything to run meanwhile:
    // sync at once, here (the helper thread's round trip costs ~0.1 ms more).
    if (this.#pending === 1) this.#walSync.barrier();
    this.#walSync.afterSync(mark, answered);
  }

  async #runNow(request, owner) {
    this.#walSync?.reap(); // a sync that has ended frees replies: out they go, before anything runs
    this.#activity(owner);
    if (this.#walSync) this.#walSync.relaxed = Boolean(request.relaxed);
    try {
      const before = this.#walSync?.commits;
      const reply = await this.#runRequest(request);
      // In memory nothing is synced, so nothing says what wrote: count every request.
      if (this.#walSync?.commits !== before || !this.#walSync) this.writes += 1;
      return { reply, mark: this.#walSync?.mark() ?? 0 };
    } finally {
      this.#activity(null);
      if (this.#walSync) this.#walSync.relaxed = false;
    }
  }

  /** Run trusted SQL of the sidecar's own (maintenance) between requests: its part. */
  async runInternal(sql) {
    return this.#pg.runExclusive(async () => {
      const [part] = await this.#execute([this.#wire.query(sql)]);
      await this.#reset(RESET_AFTER_REQUEST);
      return part;
    });
  }

  /** Sync what maintenance wrote, so that no later reply waits for it. */
  settle() {
    return new Promise((resolve) => (this.#walSync ? this.#walSync.afterSync(this.#walSync.mark(), resolve) : resolve()));
  }

  async #runRequest(request) {
    const { id } = request;
    switch (request.type) {
      case 'query': {
        const refused = refusal(request.sql, false);
        if (refused) return errorReply(id, { code: 'session_state', message: refused });
        // The statement, then Sync: one part.
        const [done] = await this.#runStatements(request, (statement) => [
          ...statement(request.sql, request.params, request.types),
          this.#wire.sync(),
        ], 1);
        if (done.status !== 'I') return this.#rolledBack(id);
        return done.error ? errorReply(id, done.error) : resultReply(id, done.results[0]);
      }
      case 'batch': {
        for (const [index, [sql]] of request.statements.entries()) {
          const refused = refusal(sql, true);
          if (refused) return errorReply(id, { code: 'session_state', message: refused }, index);
        }
        // BEGIN; the statements, then Sync; COMMIT: three parts. After a failure PostgreSQL
        // skips to the Sync, and the COMMIT of the failed transaction rolls it back.
        const [begun, statements, committed] = await this.#runStatements(
          request,
          (statement) => [
            this.#wire.query('BEGIN'),
            ...request.statements.flatMap(([sql, params, types]) => statement(sql, params, types)),
            this.#wire.sync(),
            this.#wire.query('COMMIT'),
          ],
          3,
          maySetRole(request.statements),
        );
        if (committed.status !== 'I') return this.#rolledBack(id);
        if (begun.error) return errorReply(id, begun.error);
        if (statements.error) return errorReply(id, statements.error, statements.errorAt);
        if (committed.error) return errorReply(id, committed.error); // a deferred constraint, say
        return { type: 'batch_result', id, affected: statements.results.map((r) => r.affected) };
      }
      case 'exec':
        return this.#runScript(request);
      default:
        throw new Error(`not a SQL request: ${request.type}`);
    }
  }

  /**
   * Run a query or batch in one call into PGlite: its setup when the session needs another
   * search_path, the messages `build` makes (which end `parts` parts), then the reset every
   * request ends with. Returns the request's own parts. A query or batch that failed only
   * because a prepared statement went stale failed whole (a batch rolls back), so it runs
   * once more, with every statement parsed anew.
   */
  async #runStatements(request, build, parts, resetRole = false) {
    const wire = this.#wire;
    for (let attempt = 0; ; attempt++) {
      const setup = request.setup ?? DEFAULT_SETUP;
      const setupMessages = setup !== this.#setup ? [wire.query(setup)] : [];
      const resetMessages = [...(resetRole ? [wire.query(RESET_ROLE)] : []), wire.query(RESET_AFTER_REQUEST)];
      const statement = (sql, params, types) => this.#prepared.messages(wire, setup, sql, params, types);
      let all;
      try {
        all = await this.#execute([...setupMessages, ...build(statement), ...resetMessages, ...this.#prepared.closing(wire)]);
      } catch (err) {
        this.#prepared.failed();
        throw err;
      }
      this.#setup = DEFAULT_SETUP; // RESET ALL ran last
      const [setupPart] = all.splice(0, setupMessages.length);
      const own = all.splice(0, parts);
      const resets = all.splice(0, resetMessages.length);
      // SET search_path and RESET cannot fail, short of a broken database: if one did, the
      // request ran on the wrong schema, or left the session changed. Nothing can be trusted.
      const failed = [setupPart, ...resets].find((part) => part?.error);
      if (failed) throw new DatabaseBroken(`the session could not be set up or reset: ${failed.error.message}`);
      const error = own.find((part) => part.error)?.error;
      if (droppedPrepared(own.flatMap((part) => part.results.map((r) => r.tag)))) this.#prepared.clear();
      if (!error) {
        this.#prepared.succeeded();
      } else if (attempt === 0 && isStale(error)) {
        this.#prepared.clear();
        continue;
      } else {
        this.#prepared.failed();
      }
      return own;
    }
  }

  /** A script: anything goes, as long as it ends with no transaction open; then reset it all. */
  async #runScript(request) {
    const wire = this.#wire;
    const setup = request.setup ?? DEFAULT_SETUP;
    const setupMessages = setup !== this.#setup ? [wire.query(setup)] : [];
    let script;
    try {
      const all = await this.#execute([...setupMessages, wire.query(request.sql)]);
      if (setupMessages.length && all[0].error) throw new DatabaseBroken(`the session could not be set up: ${all[0].error.message}`);
      script = all.at(-1);
    } finally {
      const tags = script?.results.map((r) => r.tag) ?? [];
      if (script && script.status !== 'I') await this.#execute([wire.query('ROLLBACK')]);
      await this.#reset(RESET_AFTER_SCRIPT + (tags.includes('PREPARE') ? '; DEALLOCATE ALL' : ''));
      if (tags.includes('PREPARE') || droppedPrepared(tags)) this.#prepared.clear();
    }
    if (script.status !== 'I') return errorReply(request.id, { code: 'open_transaction', message: OPEN_TRANSACTION });
    if (script.error) return errorReply(request.id, script.error);
    const last = script.results.at(-1) ?? { names: [], types: [], rows: [], affected: 0 };
    return { ...resultReply(request.id, last), affected: script.results.reduce((n, r) => n + r.affected, 0) };
  }

  /** The request's transaction was left open (it cannot be, short of a bug): roll it back. */
  async #rolledBack(id) {
    await this.#execute([this.#wire.query('ROLLBACK')]);
    await this.#reset(RESET_AFTER_SCRIPT);
    return errorReply(id, { code: 'open_transaction', message: OPEN_TRANSACTION });
  }

  /** Put the session back as every request expects to find it. */
  async #reset(sql) {
    const [part] = await this.#execute([this.#wire.query(sql)]);
    if (part.error) throw new DatabaseBroken(`the session could not be reset: ${part.error.message}`);
    this.#setup = DEFAULT_SETUP;
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
