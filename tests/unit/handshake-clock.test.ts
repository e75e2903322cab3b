// terminal/handshake-clock.ts on a real file: timestamps only go up, through wall-clock jumps and restarts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HandshakeClock, RESERVE_MS } from '../../agent/src/terminal/handshake-clock.js';

function withFile(body: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'hs-clock-'));
  try {
    body(join(dir, 'handshake-clock.json'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void test('the wall clock going back does not take handshake timestamps back', () => {
  let wall = 1_800_000_000_000;
  const c = new HandshakeClock(undefined, undefined, () => wall);
  const a = c.next();
  wall -= 86_400_000;
  const b = c.next();
  const d = c.next();
  assert.ok(b > a && d > b, `${a} < ${b} < ${d}`);
  wall += 2 * 86_400_000;
  assert.equal(c.next(), wall, 'a wall clock ahead again is used as it is');
});

void test('after a restart with the clock moved back, timestamps continue above every one issued before', () => {
  withFile((file) => {
    let wall = 2_100_000_000_000; // a boot with the clock in 2036
    const first = new HandshakeClock(file, undefined, () => wall);
    let last = 0;
    for (let i = 0; i < 5; i++) last = first.next();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    wall = 1_800_000_000_000; // the correct time, after a restart
    const second = new HandshakeClock(file, undefined, () => wall);
    assert.ok(second.next() > last);
    // The file is written when use passes the reserved ceiling, not per handshake.
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { ceilingMs: number };
    assert.ok(stored.ceilingMs >= last + RESERVE_MS - 1 && stored.ceilingMs > 2_100_000_000_000);
  });
});

void test('an unreadable ceiling is an error, not a silent start from zero', () => {
  withFile((file) => {
    writeFileSync(file, 'not json');
    assert.throws(() => new HandshakeClock(file));
  });
});
