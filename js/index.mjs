// timestep for JavaScript: the mirror of the Python API (`run_agent`, `consume_result`,
// `RunStateStore`) over the same tables, so a run paused by one SDK resumes in the other.
//
// Storage is PostgreSQL (through `pg`) or the embedded PGlite database, which JavaScript reaches
// through the sidecar serving the directory, started here if nobody serves it (js/embedded.mjs).
// The tables are made by the migrations both languages apply (timestep/store/migrations,
// js/backend.mjs).
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Runner, RunState, StreamedRunResult } from '@openai/agents';
import { InvalidDecision, InvalidRunState, RunNotResumable, RunStateNotFound } from './errors.mjs';
import { RunJournal, hookGraph, hookedProvider } from './journal.mjs';
import { Database, OID } from './backend.mjs';
import { MultiModelProvider } from './models.mjs';
import { Session } from './session.mjs';

export { Session } from './session.mjs';
export {
  DataDirUnusable,
  InvalidDecision,
  InvalidJournal,
  InvalidRunState,
  ModelRoutingError,
  RunNotResumable,
  RunStateNotFound,
  TimestepError,
} from './errors.mjs';
export { MultiModelProvider, MultiModelProviderMap, OllamaProvider, OpenAICompatibleProvider } from './models.mjs';
export { toolCallKey } from './journal.mjs';

const SDK = 'javascript';
const CARRY = '$timestep'; // top-level key the Python converter keeps its own fields under

// The save timestep/run_state.py makes (schema migration 12): the run's lock, its active row
// retired, the new one inserted, in one statement. Only the JavaScript form: no Python state
// and no conversion error.
const SAVE = 'SELECT timestep_save_run_state($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL)';
const ACTIVE = 'SELECT id, sdk, status, state_js, conversion_error, decisions FROM run_states WHERE run_id = $1 AND active';
// A durable run's lifecycle (schema migrations 13 to 15), as timestep/durable_run.py drives it.
// A claim records the decisions made on the state it resumes, for a recovery to resume with:
// those on its pending calls, and the state itself if it approves or rejects every later call
// of a tool (which only the state can hold).
const START = 'SELECT * FROM timestep_start_run($1, $2, $3, $4, $5, $6, $7)';
const CLAIM = 'SELECT * FROM timestep_claim_run($1, $2, $3, $4, $5::jsonb, NULL, $6, NULL)';
// What a claimed run goes on from: its input if it never paused, else its latest state.
const INPUT = 'SELECT state IS NULL AND state_js IS NULL AS new, input FROM run_states WHERE run_id = $1 AND active';
const RENEW = 'SELECT timestep_renew_run_lease($1, $2, $3) AS held';
const END = 'SELECT timestep_end_run($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, NULL, $10, $11) AS ended';
const LEASE_SECONDS = 60;
const MARK_RESUMED = 'UPDATE run_states SET resumed_at = now() WHERE id = $1';
const DELETE = 'DELETE FROM run_states WHERE run_id = $1';

/** Why run `runId`, whose active row is in `status`, cannot be taken (worded as run_state.py words it). */
function notResumable(runId, row, superseded = false) {
  const run = JSON.stringify(runId);
  const details = { runId, status: row?.status ?? null, leaseOwner: row?.lease_owner ?? null, leaseExpiresAt: row?.lease_expires_at ?? null };
  if (!row?.status) return new RunNotResumable(`run ${run} has no saved state: nothing to resume`, { ...details, reason: 'missing' });
  if (superseded) {
    return new RunNotResumable(
      `run ${run} was saved again since this state was loaded (it is now ${row.status}): load it again to resume its latest state; nothing ran`,
      { ...details, reason: 'superseded' },
    );
  }
  if (row.status === 'running') {
    return new RunNotResumable(
      `run ${run} is being run by ${row.lease_owner} (its lease runs until ${row.lease_expires_at}): nothing ran. ` +
        'If that process died, the run can be taken once the lease expires',
      { ...details, reason: 'held' },
    );
  }
  return new RunNotResumable(
    `run ${run} is ${row.status}: it has nothing left to resume, and nothing ran. \`timestep runs show\` prints its final output`,
    { ...details, reason: 'finished' },
  );
}

/** The recorded decisions of a run, each checked, as run_state.py checks them. */
function checkedDecisions(decisions, runId) {
  const run = JSON.stringify(runId);
  if (typeof decisions !== 'object' || decisions === null || Array.isArray(decisions)) {
    throw new InvalidDecision(`the decisions recorded for run ${run} are not an object of call id -> decision`);
  }
  for (const [callId, decision] of Object.entries(decisions)) {
    const ok =
      typeof decision === 'object' && decision !== null && !Array.isArray(decision) &&
      typeof decision.approved === 'boolean' &&
      (decision.message == null || typeof decision.message === 'string') &&
      Object.keys(decision).every((key) => key === 'approved' || key === 'message');
    if (!ok) {
      throw new InvalidDecision(
        `the decision recorded for call ${JSON.stringify(callId)} of run ${run} is ${JSON.stringify(decision)}, not ` +
          '{"approved": true} or {"approved": false, "message": "..."}; record it again with `timestep runs approve/reject`',
      );
    }
  }
  return decisions;
}

// The row load() read each RunState from: runAgent claims that row.
const loadedRows = new WeakMap();
// The lease of a durable streamed run not yet drained: consumeResult records how it ended.
const streamLeases = new WeakMap();

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
 * Run `agent` on `input` (text, input items, or a RunState to resume) with `session`, routing
 * model names by prefix (MultiModelProvider). Returns the SDK's result unchanged: a RunResult, or with `stream` a StreamedRunResult
 * (drain it with consumeResult). SDK errors propagate unchanged.
 */
export async function runAgent(agent, input, session, stream = false, options = {}) {
  const { runStore, ...sdkOptions } = options;
  const runOptions = { ...sdkOptions, stream: Boolean(stream) };
  if (session != null) runOptions.session = session; // the SDK wants a Session or nothing
  if (!runStore) return runners().plain.run(agent, input, runOptions);
  const lease = await (input instanceof RunState ? runStore._claim(input) : runStore._start(input));
  return runHeld(agent, input, runOptions, lease);
}

let runnersMade = null;

/**
 * The runners runAgent runs with, made once per process: the SDK's, routing model names by
 * prefix (MultiModelProvider); a durable run's also hooks the models it makes from names for
 * its journal (js/journal.mjs), as the agents' own models are.
 */
function runners() {
  if (!runnersMade) {
    const routing = new MultiModelProvider();
    runnersMade = { plain: new Runner({ modelProvider: routing }), durable: new Runner({ modelProvider: hookedProvider(routing) }) };
  }
  return runnersMade;
}

/**
 * runAgent for a run this process holds under `lease`: run it with its journal (a recovery
 * replays what the segment did before), and record how it ends.
 */
async function runHeld(agent, input, runOptions, lease) {
  let result;
  try {
    const journal = await lease.journal(runOptions.session);
    hookGraph(agent);
    result = await journal.run(() => runners().durable.run(agent, input, runOptions));
  } catch (err) {
    await lease.fail(err);
    throw lostWithin(err) ?? err;
  }
  if (runOptions.stream) streamLeases.set(result, lease);
  else await lease.finish(result);
  return result;
}

/** Drain a streamed result's events and return it finished; return any other result as is. */
export async function consumeResult(result) {
  if (result instanceof StreamedRunResult) {
    const lease = streamLeases.get(result);
    streamLeases.delete(result);
    try {
      for await (const _event of result.toStream()) {
        // events are not needed here; draining lets the run reach its end
      }
      await result.completed; // rejects with the run's error, if it failed
    } catch (err) {
      await lease?.fail(err);
      throw lostWithin(err) ?? err;
    }
    if (result.cancelled) {
      // The stream was left before the run ended (the SDK stops the run): it did not finish.
      // Recorded failed, its state and journal kept, so that it can be retried or recovered.
      await lease?.fail(new Error('the stream was cancelled before the run ended'));
    } else {
      await lease?.finish(result);
    }
  }
  return result;
}

/**
 * The RunNotResumable `err` is, or was thrown from: a run taken from this process (the journal
 * finds it lost) surfaces from inside a tool wrapped in the SDK's error, and is said as itself.
 */
function lostWithin(err) {
  const seen = new Set();
  for (let current = err; current && !seen.has(current); current = current.cause) {
    if (current instanceof RunNotResumable) return current;
    seen.add(current);
  }
  return null;
}

/** This process's hold on a durable run, renewed until finish() or fail() (durable_run.py's RunLease). */
class RunLease {
  #timer;

  constructor(store, db, owner, stateId, claimedFrom) {
    this.store = store;
    this.db = db;
    this.owner = owner;
    this.stateId = stateId; // the run_states row the run runs from: its journal's segment
    // What the run was claimed from: null for a run just started, or 'interrupted' (a pause
    // begins a new segment: no journal to replay either), 'failed' or 'running' (its process died).
    this.claimedFrom = claimedFrom;
    const seconds = store.leaseSeconds;
    this.#timer = setInterval(() => {
      db.query(RENEW, [store.sessionId, owner, String(seconds)], [OID.text, OID.text, OID.float8])
        .catch(() => {}); // the store is down for a moment: the next renewal tries again (a run taken meanwhile: finish() says so)
    }, (seconds * 1000) / 3);
    this.#timer.unref();
  }

  /**
   * The journal of the segment this lease holds: empty, or what a claimed segment did before. A
   * timestep Session in the run's database is journaled with its writes.
   */
  async journal(session) {
    const journal =
      this.claimedFrom === null || this.claimedFrom === 'interrupted'
        ? new RunJournal(this.db, this.store.sessionId, this.stateId, this.owner)
        : await RunJournal.open(this.db, this.store.sessionId, this.stateId, this.owner, {
            afterFailure: this.claimedFrom === 'failed',
            sessionId: session?.sessionId ?? null,
          });
    if (session instanceof Session && session.target === this.store._target) await journal.recordSession(session);
    return journal;
  }

  /** Record `interrupted` (the state saved) or `finished` (the final output), and let go. */
  async finish(result) {
    clearInterval(this.#timer);
    const pending = result.interruptions?.length ?? 0;
    const document = pending ? result.state.toJSON() : null; // a finished run resumes no more
    const { rows } = await this.db.query(
      END,
      [
        this.store.sessionId, this.owner, pending ? 'interrupted' : 'finished',
        document?.currentAgent?.name ?? this.store.agent.name, String(pending), SDK, agentsVersion(),
        String(document?.$schemaVersion ?? ''), document && JSON.stringify(document),
        pending ? null : JSON.stringify(result.finalOutput ?? null), null,
      ],
      [OID.text, OID.text, OID.text, OID.text, OID.int4, OID.text, OID.text, OID.text, OID.json, OID.json, OID.text],
    );
    if (!rows[0]?.ended) {
      throw new RunNotResumable(
        `run ${JSON.stringify(this.store.sessionId)} was taken from this process while it ran (its lease ran out ` +
          'without being renewed): what this run did was not recorded',
        { runId: this.store.sessionId, reason: 'lost' },
      );
    }
  }

  /** Record `failed` with the error, keeping the state it started from; let go. */
  async fail(err) {
    clearInterval(this.#timer);
    const message = `${err?.name ?? 'Error'}: ${err?.message ?? err}`;
    await this.db
      .query(
        END,
        [this.store.sessionId, this.owner, 'failed', this.store.agent.name, '0', SDK, agentsVersion(), '', null, null, message],
        [OID.text, OID.text, OID.text, OID.text, OID.int4, OID.text, OID.text, OID.text, OID.json, OID.json, OID.text],
      )
      .catch(() => {}); // the run's own error matters more
  }
}

/**
 * The approvals and rejections made on `state`'s pending calls (as `timestep runs approve`
 * records them), or null: recorded with the claim, so that a recovery resumes with them too.
 */
function decisionsOn(state) {
  const decisions = {};
  for (const item of state.getInterruptions()) {
    const callId = item.rawItem?.callId;
    const toolName = item.rawItem?.name ?? item.name;
    if (typeof callId !== 'string') continue;
    const approved = state._context.isToolApproved({ toolName, callId });
    if (approved === true) decisions[callId] = { approved: true };
    else if (approved === false) decisions[callId] = { approved: false, message: state._context.getRejectionMessage(toolName, callId) ?? null };
  }
  return Object.keys(decisions).length ? decisions : null;
}

/**
 * Whether `state` approves or rejects every later call of some tool (alwaysApprove,
 * alwaysReject), read from its context's approvals alone: the whole state is serialized, for
 * the claim to record, only when it does.
 */
function hasStandingDecisions(state) {
  return Object.values(state._context.toJSON().approvals ?? {}).some((record) => record.approved === true || record.rejected === true);
}

function leaseOwner() {
  return `${os.hostname()}:${process.pid}:${crypto.randomBytes(4).toString('hex')}`;
}

/** Saved states of one run (`sessionId`), resumable with `agent`'s graph. */
export class RunStateStore {
  #options;
  #database;

  constructor({ agent, sessionId, connectionString, pgliteDir, leaseSeconds = LEASE_SECONDS } = {}) {
    if (!agent) throw new TypeError('RunStateStore needs { agent }: the graph saved states resume with');
    if (!(leaseSeconds > 0)) throw new TypeError(`leaseSeconds must be positive, not ${leaseSeconds}`);
    this.agent = agent;
    this.sessionId = sessionId ?? crypto.randomUUID();
    this.leaseSeconds = leaseSeconds;
    this.#options = { connectionString, pgliteDir };
    this.#database = new Database(this.#options);
  }

  #db() {
    return this.#database.db();
  }

  /** Which database the store is in (see Session.target). */
  get _target() {
    return this.#database.target;
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
        pending ? 'interrupted' : 'finished',
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
    if (row.status === 'finished') throw notResumable(this.sessionId, row); // nothing to resume
    const decisions = checkedDecisions(row.decisions ?? {}, this.sessionId);
    const state = await this.#decode(row);
    for (const item of state.getInterruptions()) {
      const decision = decisions[item.rawItem?.callId ?? ''];
      if (!decision) continue;
      if (decision.approved) state.approve(item);
      else state.reject(item, decision.message != null ? { message: decision.message } : undefined);
    }
    await db.query(MARK_RESUMED, [String(row.id)], [OID.int8]);
    loadedRows.set(state, row.id);
    return state;
  }

  /** runAgent with { runStore }: begin a run on new input; refused while another process holds it. */
  async _start(input) {
    const db = await this.#db();
    const owner = leaseOwner();
    const { rows } = await db.query(
      START,
      [this.sessionId, this.agent.name, SDK, agentsVersion(), JSON.stringify(input), owner, String(this.leaseSeconds)],
      [OID.text, OID.text, OID.text, OID.text, OID.json, OID.text, OID.float8],
    );
    if (!rows[0].started) throw notResumable(this.sessionId, rows[0]);
    return new RunLease(this, db, owner, rows[0].id, null);
  }

  /**
   * runAgent with { runStore }: take the run to resume `state` (the row load() read, if it came
   * from there); with no state, take it in whichever resumable status it is (a recovery).
   */
  async _claim(state) {
    const db = await this.#db();
    const owner = leaseOwner();
    const loaded = (state && loadedRows.get(state)) ?? null;
    const decided = state ? decisionsOn(state) : null;
    const standing = state && hasStandingDecisions(state) ? JSON.stringify(state.toJSON()) : null;
    const { rows } = await db.query(
      CLAIM,
      [this.sessionId, loaded === null ? null : String(loaded), owner, String(this.leaseSeconds), decided && JSON.stringify(decided), standing],
      [OID.text, OID.int8, OID.text, OID.float8, OID.jsonb, OID.json],
    );
    const row = rows[0];
    if (!row.claimed) {
      throw notResumable(this.sessionId, row, loaded !== null && row.active_id !== null && row.active_id !== loaded);
    }
    return new RunLease(this, db, owner, row.active_id, row.claimed_from);
  }

  /**
   * Take this run back and run it to its end or next pause, if no process holds it: one whose
   * process died while it ran (its lease expired), one that failed, or one that is interrupted.
   * What its journal holds is replayed, not done again: a model response or tool output of the
   * segment is taken from the journal, and the run goes on live from the first step it lacks.
   * Returns the SDK's RunResult; throws RunNotResumable if the run is finished or held, and then
   * nothing runs. `options` are runAgent's, and `session`: by default the timestep Session the
   * journal says the run wrote to, if it wrote to one.
   */
  async recover(options = {}) {
    let { session, ...sdkOptions } = options;
    await RunJournal.checkReplayable(await this.#db(), this.sessionId);
    const lease = await this._claim(null);
    let input;
    let opened = null; // the session the journal names, opened here and closed after the run
    try {
      const db = await this.#db();
      const { rows } = await db.query(INPUT, [this.sessionId], [OID.text]);
      input = rows[0]?.new ? rows[0].input : await this.load();
      const journaledIn = session === undefined ? await RunJournal.sessionOf(db, lease.stateId) : null;
      if (journaledIn !== null) session = opened = new Session({ sessionId: journaledIn, ...this.#options });
    } catch (err) {
      await lease.fail(err);
      throw err;
    }
    const runOptions = { ...sdkOptions, stream: false };
    if (session != null) runOptions.session = session;
    try {
      return await runHeld(this.agent, input, runOptions, lease);
    } finally {
      await opened?.close();
    }
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
    await this.#database.close();
  }
}
