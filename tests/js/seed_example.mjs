// The TypeScript user's durable run with a conversation, in JavaScript alone: runAgent with a
// timestep Session pauses for an approval, the state is saved (RunStateStore.save), loaded,
// approved and resumed. The model is the fake server at FAKE_MODEL_URL; the database is
// PG_CONNECTION_URI or TIMESTEP_PGLITE_DIR.
//
//   node seed_example.mjs RUN_ID   -> {"paused", "final", "executed", "items": the session's items}
import { Agent, OpenAIResponsesModel, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { RunStateStore, Session, runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
const executed = [];
const wireMoney = tool({
  name: 'wire_money',
  description: 'Send money.',
  parameters: z.object({ amount: z.number() }),
  needsApproval: true,
  execute: async ({ amount }) => {
    executed.push(amount);
    return `sent ${amount}`;
  },
});
const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
const agent = new Agent({ name: 'banker', instructions: 'help', model: new OpenAIResponsesModel(client, 'gpt-4.1'), tools: [wireMoney] });

const runId = process.argv[2];
const session = new Session({ sessionId: runId });
const store = new RunStateStore({ agent, sessionId: runId });
try {
  const paused = await runAgent(agent, 'send 5', session);
  await store.save(paused.state);
  const state = await store.load();
  for (const item of state.getInterruptions()) state.approve(item);
  const result = await runAgent(agent, state, session);
  process.stdout.write(JSON.stringify({
    paused: paused.interruptions.map((item) => item.rawItem.callId),
    final: result.finalOutput,
    executed,
    items: await session.getItems(),
  }));
} finally {
  await Promise.all([session.close(), store.close()]);
}
