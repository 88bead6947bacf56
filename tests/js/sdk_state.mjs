// The stock JavaScript Agents SDK alone (no timestep): pause a run and print its state, or
// resume a state document. The converter tests use it to hand states across the language line.
//
//   node sdk_state.mjs pause GRAPH INPUT_JSON       -> the paused state's JSON on stdout
//   node sdk_state.mjs resume GRAPH FILE DECISIONS  -> {"final", "executed", "pending", "state"?}
//
// DECISIONS is JSON: call id -> "approve" or a rejection message. The model is FAKE_MODEL_URL.
import fs from 'node:fs';
import { RunState, run, setTracingDisabled } from '@openai/agents';
import { applyDecisions, executed, makeGraph } from './banker.mjs';

setTracingDisabled(true);
const [command, graph, ...rest] = process.argv.slice(2);

if (command === 'pause') {
  const result = await run(makeGraph(graph), JSON.parse(rest[0]));
  process.stdout.write(result.state.toString());
} else if (command === 'resume') {
  const [file, decisionsJson] = rest;
  const decisions = JSON.parse(decisionsJson ?? '{}');
  const agent = makeGraph(graph);
  const state = await RunState.fromString(agent, fs.readFileSync(file, 'utf8'));
  applyDecisions(state, decisions);
  const result = await run(agent, state);
  const pending = result.interruptions?.length ?? 0;
  const outcome = { final: pending ? null : result.finalOutput, executed, pending };
  if (pending) outcome.state = result.state.toJSON();
  process.stdout.write(JSON.stringify(outcome));
} else {
  process.stderr.write(`unknown command ${command}\n`);
  process.exit(2);
}
