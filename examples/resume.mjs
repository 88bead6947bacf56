// Resume a run Python paused (handoff.py): load it, approve its calls, run it to the end.
//     node examples/resume.mjs RUN_ID
// The agent has the Python agent's names and tools; the store is PG_CONNECTION_URI's
// PostgreSQL, else the embedded database of TIMESTEP_PGLITE_DIR (or the default directory).
import { Agent, tool } from '@openai/agents';
import { z } from 'zod';
import { RunStateStore, runAgent, consumeResult } from 'timestep-agents';

const wireMoney = tool({
  name: 'wire_money',
  description: 'Send money.',
  parameters: z.object({ amount: z.number() }),
  needsApproval: true,
  execute: async ({ amount }) => `sent ${amount}`,
});
const banker = new Agent({ name: 'banker', instructions: 'Help with payments.', model: 'gpt-4.1', tools: [wireMoney] });

const store = new RunStateStore({ agent: banker, sessionId: process.argv[2] });
try {
  const state = await store.load();
  for (const item of state.getInterruptions()) {
    console.log(`node: approving ${item.rawItem.name}(${item.rawItem.arguments})`);
    state.approve(item);
  }
  const result = await consumeResult(await runAgent(banker, state, null, false, { runStore: store }));
  console.log(`node: ${result.finalOutput}`);
} finally {
  await store.close();
}
