// The JavaScript twin of tests/banker.py: the same agents, tools and names, so a run paused
// by one SDK resumes in the other. The model is the fake server at FAKE_MODEL_URL.
import { Agent, OpenAIResponsesModel, tool } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';

export const executed = [];

const wireMoney = tool({
  name: 'wire_money',
  description: 'Send money.',
  parameters: z.object({ amount: z.number() }),
  needsApproval: true,
  execute: async ({ amount }) => {
    executed.push(`wire_money ${amount}`);
    return `sent ${amount}`;
  },
});

const closeAccount = tool({
  name: 'close_account',
  description: 'Close an account.',
  parameters: z.object({ account: z.string() }),
  needsApproval: true,
  execute: async ({ account }) => {
    executed.push(`close_account ${account}`);
    return `closed ${account}`;
  },
});

function model(baseURL) {
  const client = new OpenAI({ baseURL: baseURL ?? process.env.FAKE_MODEL_URL, apiKey: 'fake-key', maxRetries: 0 });
  return new OpenAIResponsesModel(client, 'gpt-4.1');
}

export function makeAgent(baseURL) {
  return new Agent({ name: 'banker', instructions: 'help', model: model(baseURL), tools: [wireMoney, closeAccount] });
}

export function makeTriage(baseURL) {
  const banker = makeAgent(baseURL);
  return new Agent({ name: 'triage', instructions: 'route', model: banker.model, handoffs: [banker] });
}

/** The entry agent of graph `name` ("banker" or "triage"). */
export function makeGraph(name, baseURL) {
  return { banker: makeAgent, triage: makeTriage }[name](baseURL);
}

/** Apply a test's decisions to a loaded state: call id -> "approve", "always approve", or a rejection message. */
export function applyDecisions(state, decisions) {
  for (const item of state.getInterruptions()) {
    const decision = decisions[item.rawItem.callId];
    if (decision === 'approve') state.approve(item);
    else if (decision === 'always approve') state.approve(item, { alwaysApprove: true });
    else if (decision !== undefined) state.reject(item, { message: decision });
  }
}
