// How js/session.mjs stores this SDK's items (as Python does: the Responses API's input items)
// and reads them back, item type by item type, with no database: npm test
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromStored, toStored } from '../../../js/session.mjs';

const conversation = [
  { type: 'message', role: 'user', content: 'send 5' },
  { type: 'function_call', callId: 'w1', name: 'wire_money', arguments: '{"amount":5}', status: 'completed' },
  { type: 'function_call_result', callId: 'w1', name: 'wire_money', status: 'completed', output: { type: 'text', text: 'sent 5' } },
  { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'Sent.' }] },
];

test('items are stored in the format Python reads: call_id, function_call_output', () => {
  const stored = toStored(conversation);
  assert.deepEqual(stored.map((item) => item.type ?? item.role), ['user', 'function_call', 'function_call_output', 'message']);
  assert.equal(stored[1].call_id, 'w1');
  assert.equal(stored[2].call_id, 'w1');
  assert.ok(stored.every((item) => !('callId' in item) && !('providerData' in item)));
});

test('stored items read back as this SDK items, an output named by its call', () => {
  const read = fromStored(toStored(conversation));
  assert.deepEqual(read.map((item) => item.type), ['message', 'function_call', 'function_call_result', 'message']);
  assert.deepEqual([read[1].callId, read[1].name, read[1].arguments], ['w1', 'wire_money', '{"amount":5}']);
  assert.deepEqual([read[2].callId, read[2].name], ['w1', 'wire_money']);
  assert.equal(read[0].content, 'send 5');
  assert.equal(read[3].content[0].text, 'Sent.');
});

test('Python-written messages (no type, text or part content, developer role) read as this SDK messages', () => {
  const read = fromStored([
    { role: 'user', content: 'hi' },
    { role: 'user', content: [{ type: 'input_text', text: 'look' }, { type: 'input_image', image_url: 'https://x/y.png', detail: 'low' }] },
    { role: 'system', content: 'be brief' },
    { role: 'developer', content: [{ type: 'input_text', text: 'rules' }] },
    { type: 'function_call_output', call_id: 'gone', output: 'orphan' },
    { role: 'assistant', content: 'said as text' },
  ]);
  assert.deepEqual(read[0], { type: 'message', role: 'user', content: 'hi' });
  assert.deepEqual(read[1].content, [{ type: 'input_text', text: 'look' }, { type: 'input_image', image: 'https://x/y.png', providerData: { detail: 'low' } }]);
  assert.deepEqual(read[2], { type: 'message', role: 'system', content: 'be brief' });
  assert.deepEqual(read[3], { type: 'message', role: 'system', content: 'rules', providerData: { role: 'developer' } });
  assert.equal(read[4].type, 'function_call_result'); // its call is not in the items read: named by its call id
  assert.equal(read[4].name, 'gone');
  assert.deepEqual(read[5], { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'said as text' }] });
});
