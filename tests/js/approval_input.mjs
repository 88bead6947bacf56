// A function tool whose approval depends on its input, in a durable run or a plain one: the
// SDK hands the policy the input as the tool's schema parses it (here, with a default filled
// in), and a durable run must not change that. The model is the fake server at FAKE_MODEL_URL.
//
//   node approval_input.mjs durable|plain RUN_ID   -> {"seen", "pending", "final"}
import { Agent, OpenAIResponsesModel, setTracingDisabled, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';
import { RunStateStore, runAgent } from '../../js/index.mjs';

setTracingDisabled(true);
const seen = [];
const count = tool({
  name: 'count',
  description: 'Count.',
  parameters: z.object({ n: z.number().int().default(3) }),
  needsApproval: async (_context, input) => {
    seen.push(input);
    return typeof input.n !== 'number';
  },
  execute: async ({ n }) => `counted ${n}`,
});
const client = new OpenAI({ baseURL: process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
const agent = new Agent({ name: 'counter', instructions: 'count', model: new OpenAIResponsesModel(client, 'gpt-4.1'), tools: [count] });
const [mode, runId] = process.argv.slice(2);
const runStore = new RunStateStore({ agent, sessionId: runId });
try {
  const result = await runAgent(agent, 'count', null, false, mode === 'durable' ? { runStore } : {});
  const pending = result.interruptions.length;
  process.stdout.write(JSON.stringify({ seen, pending, final: pending ? null : result.finalOutput }));
} finally {
  await runStore.close();
}
