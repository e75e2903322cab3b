// The data path's clock read once per job (agent/src/util/job-clock.ts, issue 15): the same time for every packet of
// one burst, a fresh one in the next job, also after an await.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { jobNow } from '../../agent/src/util/job-clock.js';

function busyWait(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('one job sees one time, the next job a later one', async () => {
  await sleep(1);
  const first = jobNow();
  busyWait(3);
  assert.equal(jobNow(), first, 'the time stands still within a job');
  assert.ok(performance.now() - first >= 3);
  await sleep(5);
  const later = jobNow();
  assert.ok(later - first >= 5, `a later job reads the clock again (${later - first} ms later)`);
});

test('an await ends the job: the code after it reads the clock again', async () => {
  await sleep(1);
  const before = jobNow();
  busyWait(2);
  await null;
  assert.ok(jobNow() - before >= 2);
});
