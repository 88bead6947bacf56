// The JavaScript twin of tests/crashy.py: the run the JavaScript crash-recovery tests kill and
// recover, with the same tools, arguments and model (the fake server at FAKE_MODEL_URL, which
// answers with crashy.answer). Every tool execution appends "NAME N|KEY" to the file
// CRASHY_LEDGER, KEY being toolCallKey(). With CRASH_AT set, the process kills itself (SIGKILL):
//
// - `tool_start:NAME`: as tool NAME is about to run (the model response asking for it journaled);
// - `tool_end:NAME`: once tool NAME has returned (its output journaled);
// - `tool_body:NAME`: inside tool NAME, after its side effect (the ledger line);
// - `session_written`: once the run has written its conversation to its Session.
//
// With CRASHY_APPROVE_B=1, step_b needs approval (the run pauses before it); with CRASHY_TRIAGE=1
// the run begins with `triage`, which hands off to `crashy`; with CRASHY_SESSION=1 the run keeps
// its conversation in a timestep Session named by the run id (and prints its items, "items";
// a recovery finds the session in the journal). The database is
// PG_CONNECTION_URI, else the PGlite directory TIMESTEP_PGLITE_DIR through its running sidecar.
//
//   node crashy.mjs plain [RUN_ID]         an uninterrupted run, not durable -> {"final"}
//   node crashy.mjs start RUN_ID [stream]  a durable run on new input        -> {"final"} or {"pending"}
//   node crashy.mjs resume RUN_ID          load the paused run, approve its calls in memory, resume it
//   node crashy.mjs recover RUN_ID         RunStateStore.recover()           -> {"final"} or {"refused"}
import fs from 'node:fs';
import { Agent, OpenAIResponsesModel, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { RunNotResumable, RunStateStore, Session, consumeResult, runAgent, toolCallKey } from '../../js/index.mjs';

setTracingDisabled(true);

function crashIf(moment) {
  if (process.env.CRASH_AT === moment) process.kill(process.pid, 'SIGKILL');
}

function execute(name, n) {
  fs.appendFileSync(process.env.CRASHY_LEDGER, `${name} ${n}|${toolCallKey()}\n`);
  crashIf(`tool_body:${name}`);
  return `${name} did ${n}`;
}

function step(name, returns = (n) => execute(name, n), needsApproval = false) {
  const parameters = z.object({ n: z.number() });
  return tool({ name, description: `Step ${name}.`, parameters, needsApproval, execute: async ({ n }) => returns(n) });
}

function makeAgent() {
  const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
  const model = new OpenAIResponsesModel(client, 'gpt-4.1');
  const tools = [
    step('step_a'),
    step('step_b', undefined, process.env.CRASHY_APPROVE_B === '1'),
    step('pair_c', (n) => {
      execute('pair_c', n);
      return { c: n };
    }),
    step('pair_d'),
  ];
  const crashy = new Agent({ name: 'crashy', instructions: 'do the steps', model, tools });
  crashy.on('agent_tool_start', (_context, started) => crashIf(`tool_start:${started.name}`));
  crashy.on('agent_tool_end', (_context, ended) => crashIf(`tool_end:${ended.name}`));
  if (process.env.CRASHY_TRIAGE === '1') return new Agent({ name: 'triage', instructions: 'route', model, handoffs: [crashy] });
  return crashy;
}

const [command, runId, stream] = process.argv.slice(2);
const agent = makeAgent();
const runStore = new RunStateStore({ agent, sessionId: runId, leaseSeconds: 1 });
class CrashingSession extends Session {
  async addItems(items) {
    await super.addItems(items);
    crashIf('session_written');
  }
}
const session = process.env.CRASHY_SESSION === '1' ? new CrashingSession({ sessionId: runId }) : null;
try {
  let result;
  if (command === 'plain') {
    result = await runAgent(agent, 'go', session);
  } else if (command === 'start') {
    result = await consumeResult(await runAgent(agent, 'go', session, stream === 'stream', { runStore }));
  } else if (command === 'resume') {
    const state = await runStore.load();
    for (const item of state.getInterruptions()) state.approve(item);
    result = await runAgent(agent, state, null, false, { runStore });
  } else if (command === 'recover') {
    try {
      result = await runStore.recover();
    } catch (err) {
      if (!(err instanceof RunNotResumable)) throw err;
      process.stdout.write(JSON.stringify({ refused: err.reason }));
    }
  } else {
    process.stderr.write(`unknown command ${command}\n`);
    process.exitCode = 2;
  }
  if (result?.interruptions?.length) {
    process.stdout.write(JSON.stringify({ pending: result.interruptions.map((item) => item.rawItem.callId) }));
  } else if (result) {
    process.stdout.write(JSON.stringify({ final: result.finalOutput, ...(session ? { items: await session.getItems() } : {}) }));
  }
} finally {
  await Promise.all([runStore.close(), session?.close()]);
}
