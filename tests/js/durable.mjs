// The JavaScript half of the cross-language durable-run tests, through timestep's JS module:
// pause a run and save it, or load a saved run, decide, resume, and save it if it pauses again.
// The database is PG_CONNECTION_URI, else the PGlite directory TIMESTEP_PGLITE_DIR through its
// running sidecar; the model is the fake server at FAKE_MODEL_URL.
//
//   node durable.mjs pause GRAPH INPUT_JSON RUN_ID     -> {"pending": [call ids]}
//   node durable.mjs pause-decided GRAPH INPUT_JSON RUN_ID DECISION
//                       as pause, with DECISION made on every pending call in the saved state
//                       ("approve", "reject:MESSAGE", "always approve", or "always reject:MESSAGE")
//   node durable.mjs resume GRAPH RUN_ID DECISIONS [stream]
//                                                       -> {"final", "executed", "pending"}
//   node durable.mjs claim GRAPH RUN_ID DECISIONS [stream]
//                       as resume, as a durable run (runAgent with { runStore }): it records
//                       how the run ends itself     -> {"final", "executed", "pending"} or {"refused"}
//
//   node durable.mjs recover GRAPH RUN_ID             RunStateStore.recover() -> {"final", "executed", "pending"}
//
// DECISIONS is JSON: call id -> "approve", "always approve" or a rejection message (calls left
// out keep any decision stored with the run, e.g. by `timestep runs approve`).
import { setTracingDisabled } from '@openai/agents';
import { RunNotResumable, RunStateStore, consumeResult, runAgent } from '../../js/index.mjs';
import { applyDecisions, executed, makeGraph } from './banker.mjs';

setTracingDisabled(true);
const [command, graph, ...rest] = process.argv.slice(2);
const agent = makeGraph(graph);

if (command === 'pause') {
  const [input, sessionId] = rest;
  const store = new RunStateStore({ agent, sessionId });
  try {
    const result = await consumeResult(await runAgent(agent, JSON.parse(input), null));
    await store.save(result.state);
    process.stdout.write(JSON.stringify({ pending: result.interruptions.map((item) => item.rawItem.callId) }));
  } finally {
    await store.close();
  }
} else if (command === 'pause-decided') {
  const [input, sessionId, decision] = rest;
  const store = new RunStateStore({ agent, sessionId });
  try {
    const result = await consumeResult(await runAgent(agent, JSON.parse(input), null));
    const state = result.state;
    for (const item of state.getInterruptions()) {
      if (decision === 'approve') state.approve(item);
      else if (decision === 'always approve') state.approve(item, { alwaysApprove: true });
      else if (decision.startsWith('always reject:')) state.reject(item, { alwaysReject: true, message: decision.slice('always reject:'.length) });
      else if (decision.startsWith('reject:')) state.reject(item, { message: decision.slice('reject:'.length) });
      else throw new Error(`unknown decision ${decision}`);
    }
    await store.save(state);
    process.stdout.write(JSON.stringify({ pending: result.interruptions.map((item) => item.rawItem.callId) }));
  } finally {
    await store.close();
  }
} else if (command === 'resume') {
  const [sessionId, decisionsJson, stream] = rest;
  const decisions = JSON.parse(decisionsJson);
  const store = new RunStateStore({ agent, sessionId });
  try {
    const state = await store.load();
    applyDecisions(state, decisions);
    const result = await consumeResult(await runAgent(agent, state, null, stream === 'stream'));
    const pending = result.interruptions?.length ?? 0;
    if (pending) await store.save(result.state);
    process.stdout.write(JSON.stringify({ final: pending ? null : result.finalOutput, executed, pending }));
  } finally {
    await store.close();
  }
} else if (command === 'claim') {
  const [sessionId, decisionsJson, stream] = rest;
  const store = new RunStateStore({ agent, sessionId });
  try {
    try {
      const state = await store.load(); // a finished run is refused here already
      applyDecisions(state, JSON.parse(decisionsJson));
      const result = await consumeResult(await runAgent(agent, state, null, stream === 'stream', { runStore: store }));
      const pending = result.interruptions?.length ?? 0;
      process.stdout.write(JSON.stringify({ final: pending ? null : result.finalOutput, executed, pending }));
    } catch (err) {
      if (!(err instanceof RunNotResumable)) throw err;
      process.stdout.write(JSON.stringify({ refused: err.reason, executed }));
    }
  } finally {
    await store.close();
  }
} else if (command === 'recover') {
  const [sessionId] = rest;
  const store = new RunStateStore({ agent, sessionId });
  try {
    const result = await store.recover();
    const pending = result.interruptions?.length ?? 0;
    process.stdout.write(JSON.stringify({ final: pending ? null : result.finalOutput, executed, pending }));
  } finally {
    await store.close();
  }
} else {
  process.stderr.write(`unknown command ${command}\n`);
  process.exit(2);
}
