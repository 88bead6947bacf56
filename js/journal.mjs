// A durable run's journal in JavaScript: each model response and function-tool output of the
// segment it runs, written to `run_steps` as it completes and replayed when the run is
// recovered (timestep/journal.py is the Python side, and the table's layout is documented in
// timestep/store/schema.py, migration 14).
//
// The JS SDK's run loop cannot be wrapped from outside (ES modules), so the journal hooks in
// where objects can be: the run's models (the `getResponse` and `getStreamedResponse` of each
// model instance the run uses, whether an agent holds it or the run's provider makes it from a
// name), its function tools (`invoke`, which the SDK calls with the tool call), and
// `Runner.prototype.run` (so that a run begun inside the durable one, by a guardrail or an
// agent used as a tool, is not journaled as its steps). Each hook acts only while a journal is
// active in the async context (`ACTIVE`); anywhere else the SDK's own method runs, untouched.
//
// Steps are keyed as in Python: a model response by its number in the segment, a tool output by
// its call id and the number of model responses before it; each payload says it was written
// by this SDK, and a journal written by the other SDK is refused (InvalidJournal). A timestep
// Session's writes (js/session.mjs) are journaled with their items, in one statement, as
// Python's are; a recovery deletes them and the replay writes them again.
import { AsyncLocalStorage } from 'node:async_hooks';
import { Runner, Usage } from '@openai/agents';
import { InvalidJournal, RunNotResumable } from './errors.mjs';

const SDK = 'javascript';
// PostgreSQL type OIDs of the parameters the journal sends.
const OID = { int4: 23, int8: 20, text: 25, json: 114 };

const STEPS = 'SELECT kind, turn, call_id, seq, payload FROM run_steps WHERE state_id = $1';
const FORGET_STEP = "DELETE FROM run_steps WHERE state_id = $1 AND kind = 'model' AND turn = $2";
// Which SDK journaled the steps of a run's active segment (its session writes are either's).
const JOURNALED_BY = `
    SELECT count(*) FILTER (WHERE coalesce(j.payload ->> 'sdk', '') <> 'javascript') AS python
    FROM run_steps j JOIN run_states s ON s.id = j.state_id
    WHERE s.run_id = $1 AND s.active AND j.kind <> 'session'`;
const SESSION_OF = "SELECT payload ->> 'session_id' AS session_id FROM run_steps WHERE state_id = $1 AND kind = 'session' LIMIT 1";
// The session writes of a segment undone: their items deleted, and the steps that recorded them.
const REWIND_SESSION = `
    WITH undone AS (DELETE FROM run_steps WHERE state_id = $1 AND kind = 'session' RETURNING payload)
    DELETE FROM agent_messages m USING undone, json_array_elements_text(undone.payload -> 'ids') AS added (id)
    WHERE m.id = added.id::bigint AND m.session_id = undone.payload ->> 'session_id'`;
// The statements of timestep/journal.py: a step written only while its owner holds the run's
// row (under a share lock of it), and a step already journaled with whether it still does.
const JOURNAL = `
    INSERT INTO run_steps (run_id, state_id, kind, turn, call_id, seq, payload)
    SELECT s.run_id, $1, $3, $4, $5, $6, $7 FROM run_states s
    WHERE s.id = $1 AND s.active AND s.status = 'running' AND s.lease_owner = $2
    FOR SHARE
    ON CONFLICT (state_id, kind, turn, call_id) DO NOTHING`;
const JOURNALED = `
    SELECT j.payload, (s.active AND s.status = 'running' AND s.lease_owner = $5) AS held
    FROM run_steps j JOIN run_states s ON s.id = j.state_id
    WHERE j.state_id = $1 AND j.kind = $2 AND j.turn = $3 AND j.call_id = $4`;

// The journal of the durable run this code runs in: null outside one, and inside a tool's body
// (a tool's own runs are not steps of the run that called it).
const ACTIVE = new AsyncLocalStorage();
// The key of the journaled tool call this code runs in (toolCallKey()).
const TOOL_CALL = new AsyncLocalStorage();
// Models and tools whose methods are hooked already.
const hooked = new WeakSet();

/** The journal of the durable run this code runs in, or null. */
export function activeJournal() {
  return ACTIVE.getStore() ?? null;
}

/**
 * Inside a function tool of a durable run: a key naming this tool call, the same when a
 * recovery runs the call again (a call that was running when its process died has no journaled
 * output, and runs again: at least once). Give it to the service the tool acts on as an
 * idempotency key. null outside a durable run.
 */
export function toolCallKey() {
  return TOOL_CALL.getStore() ?? null;
}

/** The journal of one segment of a durable run, held by `owner`. */
export class RunJournal {
  constructor(db, runId, stateId, owner, steps = []) {
    this.db = db;
    this.runId = runId;
    this.stateId = stateId;
    this.owner = owner;
    this.entered = false; // set as the run begins: a run begun inside it is not its steps
    this.session = null; // the session whose writes are journaled (a timestep Session)
    this.sessionWrites = 0;
    this.modelResponses = 0; // model responses of the segment so far, replayed or live
    this.recorded = new Map(steps.map((row) => [stepKey(row.kind, row.turn, row.call_id), row.payload]));
    this.seq = Math.max(0, ...steps.map((row) => row.seq));
  }

  /**
   * The journal of a segment that may have run before (a claim): its steps, with the session
   * writes it made undone, so that the replay makes them again (in session `sessionId`, which
   * must be the one they were made in). After a failure, a model response that was the
   * segment's last step is dropped: the run may have failed on it, and a retry asks the model
   * again. A journal the Python SDK wrote is refused.
   */
  static async open(db, runId, stateId, owner, { afterFailure, sessionId }) {
    let { rows: steps } = await db.query(STEPS, [String(stateId)], [OID.int8]);
    if (steps.some((row) => row.kind !== 'session' && row.payload?.sdk !== SDK)) throw journaledInPython(runId);
    const written = steps.filter((row) => row.kind === 'session');
    if (written.length) {
      const journaledIn = [...new Set(written.map((row) => row.payload.session_id))];
      if (journaledIn.length !== 1 || journaledIn[0] !== sessionId) {
        throw new InvalidJournal(
          `run ${JSON.stringify(runId)} wrote its conversation to session ${JSON.stringify(journaledIn[0])}, not ` +
            `${JSON.stringify(sessionId ?? null)}: recover it with that session (new Session({ sessionId: ${JSON.stringify(journaledIn[0])} }))`,
        );
      }
      await db.query(REWIND_SESSION, [String(stateId)], [OID.int8]);
      steps = steps.filter((row) => row.kind !== 'session');
    }
    if (afterFailure && steps.length) {
      const last = steps.reduce((a, b) => (b.seq > a.seq ? b : a));
      if (last.kind === 'model') {
        await db.query(FORGET_STEP, [String(stateId), String(last.turn)], [OID.int8, OID.int4]);
        steps = steps.filter((row) => row !== last);
      }
    }
    return new RunJournal(db, runId, stateId, owner, steps);
  }

  /**
   * Throw InvalidJournal if the Python SDK journaled the run's current segment: checked before a
   * recovery claims the run, so that refusing it leaves the run as it was.
   */
  static async checkReplayable(db, runId) {
    const { rows } = await db.query(JOURNALED_BY, [runId], [OID.text]);
    if (Number(rows[0]?.python ?? 0)) throw journaledInPython(runId);
  }

  /** The session the segment wrote its conversation to, if it wrote any. */
  static async sessionOf(db, stateId) {
    const { rows } = await db.query(SESSION_OF, [String(stateId)], [OID.int8]);
    return rows[0]?.session_id ?? null;
  }

  /**
   * Journal the session the run keeps its conversation in, before anything else: the JS SDK
   * writes a run's conversation as the run ends, and a recovery of a run that died before that
   * must know where to write it.
   */
  async recordSession(session) {
    this.session = session;
    await this.#journal('session', 0, 'opened', { session_id: session.sessionId, ids: [] });
  }

  /** Whether `session`'s writes are this run's, journaled with their items. */
  journalsSession(session) {
    return session != null && session === this.session;
  }

  /** The journal's parameters to a journaled session write: the run's row, its owner, the write's number, the sequence. */
  sessionWriteParams() {
    this.seq += 1;
    return [this.stateId, this.owner, this.sessionWrites, this.seq];
  }

  /** Count a journaled session write; throw if the run was taken meanwhile. */
  sessionWritten(journaled) {
    if (!journaled) throw this.lost();
    this.sessionWrites += 1;
  }

  /** Run `fn` (the SDK's run of the segment) with this journal recording its steps. */
  run(fn) {
    hookRunner();
    return ACTIVE.run(this, fn);
  }

  /** The journaled response to the segment's next model call, or undefined: call the model. */
  replayResponse() {
    const payload = this.recorded.get(stepKey('model', this.modelResponses, ''));
    if (payload === undefined) return undefined;
    this.modelResponses += 1;
    return responseOf(payload.response);
  }

  /**
   * Journal the response to the segment's `turn`-th model call as it returns; return the
   * response the run goes on with: this one, or the one an earlier attempt of the same call
   * journaled. An attempt the SDK gave up on meanwhile (its `signal` aborted: it timed out, and
   * the SDK discards its response and calls again) stays the same step: the next attempt finds
   * its response journaled and goes on with it, as a recovery would.
   */
  async recordResponse(turn, response, signal) {
    const journaled = await this.#journal('model', turn, '', { sdk: SDK, response: responseData(response) });
    if (!signal?.aborted) this.modelResponses = Math.max(this.modelResponses, turn + 1);
    return journaled === undefined ? response : responseOf(journaled.response);
  }

  /** The journaled result of tool call `callId` in this turn: `{ output }`, or undefined: run it. */
  replayTool(callId) {
    const payload = this.recorded.get(stepKey('tool', this.modelResponses, callId));
    return payload === undefined ? undefined : { output: outputOf(payload) };
  }

  /** A key naming tool call `callId` of this turn, the same when a recovery runs it again. */
  toolKey(callId) {
    return `${this.runId}:${this.stateId}:${this.modelResponses}:${callId}`;
  }

  /** Journal a tool call's output as the tool returns; return the output the run goes on with. */
  async recordTool(callId, turn, output) {
    const payload = output === undefined ? { sdk: SDK, undefined: true } : { sdk: SDK, output: asJson(output) };
    const journaled = await this.#journal('tool', turn, callId, payload);
    return journaled === undefined ? output : outputOf(journaled);
  }

  /** Write a step; return undefined, or the payload already journaled for it. */
  async #journal(kind, turn, callId, payload) {
    this.seq += 1;
    const { affected } = await this.db.query(
      JOURNAL,
      [String(this.stateId), this.owner, kind, String(turn), callId, String(this.seq), JSON.stringify(payload)],
      [OID.int8, OID.text, OID.text, OID.int4, OID.text, OID.int4, OID.json],
    );
    if (affected) return undefined;
    const { rows } = await this.db.query(
      JOURNALED,
      [String(this.stateId), kind, String(turn), callId, this.owner],
      [OID.int8, OID.text, OID.int4, OID.text, OID.text],
    );
    if (!rows[0]?.held) throw this.lost();
    return rows[0].payload;
  }

  lost() {
    return new RunNotResumable(
      `run ${JSON.stringify(this.runId)} was taken from this process while it ran (its lease ran out without being ` +
        'renewed): it stops here, and the process that took it goes on from its journal',
      { runId: this.runId, reason: 'lost' },
    );
  }
}

/** Hook the models and function tools of `agent`'s graph (it and the agents it hands off to). */
export function hookGraph(agent, seen = new Set()) {
  if (!agent || seen.has(agent)) return;
  seen.add(agent);
  if (agent.model && typeof agent.model === 'object') hookModel(agent.model);
  for (const tool of Array.isArray(agent.tools) ? agent.tools : []) hookTool(tool);
  for (const handoff of Array.isArray(agent.handoffs) ? agent.handoffs : []) hookGraph(handoff?.agent ?? handoff, seen);
}

/** A model provider making `provider`'s models, hooked (the models a durable run names by name). */
export function hookedProvider(provider) {
  return {
    async getModel(name) {
      return hookModel(await provider.getModel(name));
    },
  };
}

/** Hook a model instance's `getResponse` and `getStreamedResponse` (once; pass-through outside a durable run). */
function hookModel(model) {
  if (!model || typeof model !== 'object' || hooked.has(model)) return model;
  hooked.add(model);
  const getResponse = model.getResponse;
  const getStreamedResponse = model.getStreamedResponse;
  model.getResponse = async function (request) {
    const journal = ACTIVE.getStore();
    if (!journal) return getResponse.call(this, request);
    const replayed = journal.replayResponse();
    if (replayed) return replayed;
    const turn = journal.modelResponses;
    return journal.recordResponse(turn, await getResponse.call(this, request), request?.signal);
  };
  if (typeof getStreamedResponse === 'function') {
    model.getStreamedResponse = async function* (request) {
      const journal = ACTIVE.getStore();
      if (!journal) {
        yield* getStreamedResponse.call(this, request);
        return;
      }
      const replayed = journal.replayResponse();
      if (replayed) {
        yield responseDone(replayed);
        return;
      }
      const turn = journal.modelResponses;
      for await (const event of getStreamedResponse.call(this, request)) {
        if (event?.type !== 'response_done') {
          yield event;
          continue;
        }
        const streamed = {
          usage: new Usage(event.response.usage),
          output: event.response.output,
          responseId: event.response.id,
          requestId: event.response.requestId,
          providerData: event.response.providerData,
        };
        const journaled = await journal.recordResponse(turn, streamed, request?.signal);
        yield journaled === streamed ? event : responseDone(journaled); // an earlier attempt's, journaled first
      }
    };
  }
  return model;
}

/**
 * Hook a function tool's `invoke`, for the SDK's call of it only. The SDK also keys what it
 * knows of the tool by the `invoke` function (its input parser, retained inputs): so the
 * property is the tool's own function to every reader but the one that calls it
 * (`invokeFunctionTool`'s `invokeWithTimeoutFlag`), and to that one only inside a durable run.
 */
function hookTool(tool) {
  if (tool?.type !== 'function' || typeof tool.invoke !== 'function' || hooked.has(tool)) return;
  hooked.add(tool);
  let invoke = tool.invoke;
  async function journaledInvoke(runContext, input, details) {
    const journal = ACTIVE.getStore();
    const callId = details?.toolCall?.callId;
    if (!journal || !callId) return invoke.call(this, runContext, input, details);
    const replayed = journal.replayTool(callId);
    if (replayed) return replayed.output;
    const turn = journal.modelResponses;
    const output = await outsideTheRun(journal.toolKey(callId), () => invoke.call(this, runContext, input, details));
    return journal.recordTool(callId, turn, output);
  }
  function getInvoke() {
    return ACTIVE.getStore() && readToCall(getInvoke) ? journaledInvoke : invoke;
  }
  Object.defineProperty(tool, 'invoke', {
    configurable: true,
    enumerable: true,
    get: getInvoke,
    set: (value) => {
      invoke = value;
    },
  });
}

/** Whether the code reading a property through `getter` is the SDK's call of a function tool. */
function readToCall(getter) {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 1;
  const reader = {};
  Error.captureStackTrace(reader, getter);
  Error.stackTraceLimit = limit;
  return reader.stack.includes(' invokeWithTimeoutFlag ');
}

let runnerHooked = false;

/** Make `Runner.prototype.run` run a run begun inside a durable run outside its journal. */
function hookRunner() {
  if (runnerHooked) return;
  runnerHooked = true;
  const sdkRun = Runner.prototype.run;
  Runner.prototype.run = function (...args) {
    const journal = ACTIVE.getStore();
    if (!journal) return sdkRun.apply(this, args);
    if (!journal.entered) {
      journal.entered = true; // the durable run itself, beginning
      return sdkRun.apply(this, args);
    }
    return outsideTheRun(null, () => sdkRun.apply(this, args));
  };
}

/** Run `fn`, which is none of the durable run's steps, with `key` as the tool call key it sees. */
function outsideTheRun(key, fn) {
  return ACTIVE.run(null, () => TOOL_CALL.run(key, fn));
}

function journaledInPython(runId) {
  return new InvalidJournal(
    `cannot replay run ${JSON.stringify(runId)} in JavaScript: its journal was written by the Python SDK; recover it ` +
      'from Python (RunStateStore(agent, run_id).recover(), or `timestep runs resume`)',
  );
}

function stepKey(kind, turn, callId) {
  return `${kind}\u0000${turn}\u0000${callId}`;
}

/** A ModelResponse as the journal keeps it (JSON). */
function responseData(response) {
  return JSON.parse(
    JSON.stringify({
      usage: response.usage,
      output: response.output,
      responseId: response.responseId,
      requestId: response.requestId,
      providerData: response.providerData,
    }),
  );
}

/** A journaled response as the ModelResponse the SDK's run loop takes. */
function responseOf(data) {
  const response = { usage: new Usage(data.usage), output: data.output };
  for (const key of ['responseId', 'requestId', 'providerData']) if (data[key] !== undefined) response[key] = data[key];
  return response;
}

/** A journaled response as the one event of a replayed stream (the SDK builds the turn from it). */
function responseDone(response) {
  return {
    type: 'response_done',
    response: {
      id: response.responseId ?? '',
      ...(response.requestId !== undefined ? { requestId: response.requestId } : {}),
      usage: JSON.parse(JSON.stringify(response.usage)),
      output: response.output,
      ...(response.providerData !== undefined ? { providerData: response.providerData } : {}),
    },
  };
}

/** A tool's output as JSON: as is when JSON holds it, else as the text it shows as. */
function asJson(output) {
  try {
    const json = JSON.stringify(output);
    if (json !== undefined) return JSON.parse(json);
  } catch {
    // a BigInt, a cycle: kept as text
  }
  return String(output);
}

function outputOf(payload) {
  return payload.undefined ? undefined : payload.output;
}
