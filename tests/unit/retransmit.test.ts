// PendingRequests (agent/src/protocol/retransmit.ts), on the mocked clock: retransmission with exponential backoff
// under a deadline, and resendNow, which a REGISTRATION_COOKIE uses to send the request again and start the backoff
// over (issue 11 #4: a newcomer under a flood lost seconds to the backoff it had reached before the cookie came).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PendingRequests } from '../../agent/src/protocol/retransmit.js';
import { DeadlineExceededError } from '../../agent/src/types/errors.js';

const POLICY = { initialMs: 500, maxMs: 4000, deadlineMs: 10_000 };

test('a request is sent at 0, 0.5, 1.5, 3.5, 7.5 s and fails at its deadline', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const p = new PendingRequests<string>();
  let sent = 0;
  const done = p.request(1n, 'registration', () => sent++, POLICY);
  const at = (ms: number) => t.mock.timers.tick(ms);
  assert.equal(sent, 1);
  at(499); assert.equal(sent, 1);
  at(1); assert.equal(sent, 2);
  at(1000); assert.equal(sent, 3);
  at(2000); assert.equal(sent, 4);
  at(4000); assert.equal(sent, 5);
  assert.equal(p.retransmissions, 4);
  // performance.now() is not mocked: the deadline is judged on the real clock, so it has not passed yet.
  assert.equal(p.size, 1);
  p.fail(1n, new DeadlineExceededError('registration', 10_000, sent));
  await assert.rejects(done, DeadlineExceededError);
});

test('resendNow sends at once and restarts the backoff at initialMs; an answer then ends it', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const p = new PendingRequests<string>();
  let sent = 0;
  const done = p.request(2n, 'registration', () => sent++, POLICY);
  for (const ms of [500, 1000, 2000]) t.mock.timers.tick(ms); // sent at 0, 0.5, 1.5, 3.5 s: the next would be 4 s later
  assert.equal(sent, 4);
  assert.equal(p.resendNow(2n), true);
  assert.equal(sent, 5, 'sent at once');
  t.mock.timers.tick(500);
  assert.equal(sent, 6, 'then half a second later, not four');
  t.mock.timers.tick(1000);
  assert.equal(sent, 7);
  assert.equal(p.resolve(2n, 'ok'), true);
  assert.equal(await done, 'ok');
  t.mock.timers.tick(10_000);
  assert.equal(sent, 7, 'nothing after the answer');
  assert.equal(p.resendNow(2n), false, 'no longer pending');
});
