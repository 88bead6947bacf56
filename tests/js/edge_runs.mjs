// Durable runs of timestep's JS module at their edges. The model is the fake server at
// FAKE_MODEL_URL; the database is PG_CONNECTION_URI (the timeout case holds a row lock with a
// connection of its own, which only PostgreSQL has) or TIMESTEP_PGLITE_DIR.
//
//   node edge_runs.mjs timeout RUN_ID  the model call times out (150 ms) while its journal write
//                                      waits on a lock held 400 ms; the SDK retries it. Then the
//                                      run is put back as if its process had died, and recovered.
//                                      -> {"final", "ran", "steps", "recovered", "ranAgain"}
//   node edge_runs.mjs cancel RUN_ID   a streamed run left after its first event, then
//                                      consumeResult -> {"cancelled", "ran"}
//   node edge_runs.mjs recover RUN_ID  RunStateStore.recover() -> {"recovered", "ran"}
import { Agent, OpenAIResponsesModel, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import pg from 'pg';
import { z } from 'zod';
import { RunStateStore, consumeResult, runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
const ran = [];
const charge = tool({
  name: 'charge',
  description: 'Charge.',
  parameters: z.object({ n: z.number() }),
  execute: async ({ n }) => {
    ran.push(n);
    return `charged ${n}`;
  },
});
const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
const [command, runId] = process.argv.slice(2);
const out = {};

if (command === 'timeout') {
  const model = new OpenAIResponsesModel(client, 'gpt-4.1');
  const retry = { maxRetries: 1, policy: () => ({ retry: true, approveUnsafeReplay: true }) };
  const agent = new Agent({ name: 'cashier', instructions: 'charge', model, tools: [charge], modelSettings: { timeoutMs: 150, retry } });
  const store = new RunStateStore({ agent, sessionId: runId });
  const blocker = new pg.Client({ connectionString: process.env.PG_CONNECTION_URI });
  await blocker.connect();
  const sdkGetResponse = model.getResponse;
  let blocked = false;
  model.getResponse = async function (request) {
    if (!blocked) {
      // The run's row, locked for 400 ms: the first response's journal write waits past the timeout.
      blocked = true;
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM run_states WHERE run_id = $1 AND active FOR UPDATE', [runId]);
      setTimeout(() => blocker.query('COMMIT'), 400);
    }
    return sdkGetResponse.call(this, request);
  };
  try {
    out.final = (await runAgent(agent, 'charge', null, false, { runStore: store })).finalOutput;
    out.ran = [...ran];
    const { rows } = await blocker.query('SELECT kind, turn, call_id FROM run_steps WHERE run_id = $1 ORDER BY kind, turn', [runId]);
    out.steps = rows.map((row) => [row.kind, row.turn, row.call_id]);
    await blocker.query(
      "UPDATE run_states SET status = 'running', final_output = NULL, lease_owner = 'died', lease_expires_at = now() - interval '1 second' WHERE run_id = $1 AND active",
      [runId],
    );
    ran.length = 0;
    out.recovered = (await store.recover()).finalOutput;
    out.ranAgain = [...ran];
  } finally {
    await Promise.all([blocker.end(), store.close()]);
  }
} else {
  const agent = new Agent({ name: 'cashier', instructions: 'charge', model: new OpenAIResponsesModel(client, 'gpt-4.1'), tools: [charge] });
  const store = new RunStateStore({ agent, sessionId: runId });
  try {
    if (command === 'cancel') {
      const streamed = await runAgent(agent, 'charge', null, true, { runStore: store });
      for await (const _event of streamed) break;
      out.cancelled = (await consumeResult(streamed)).cancelled;
      out.ran = ran;
    } else {
      out.recovered = (await store.recover()).finalOutput;
      out.ran = ran;
    }
  } finally {
    await store.close();
  }
}
process.stdout.write(JSON.stringify(out));
