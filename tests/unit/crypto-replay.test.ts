// Anti-replay window (RFC 6479 ring bitmap, 2,048 packets): in order, out of order inside the window, too old,
// duplicates, huge jumps, limits; and an exhaustive comparison with a naive set-based model.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { REPLAY_WINDOW_SIZE, ReplayWindow } from '../../agent/src/crypto/replay.js';

void describe('ReplayWindow', () => {
  void it('accepts counters in order, each once', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 10_000; c++) {
      assert.equal(w.check(c), true);
      assert.equal(w.update(c), true);
      assert.equal(w.check(c), false);
      assert.equal(w.update(c), false);
    }
    assert.equal(w.greatest, 9_999);
  });

  void it('accepts out-of-order counters inside the window, once', () => {
    const w = new ReplayWindow();
    assert.equal(w.accept(3000), true);
    for (const c of [2999, 1000, 954, 2000, 2998]) {
      assert.equal(w.accept(c), true, `${c}`);
      assert.equal(w.accept(c), false, `${c} twice`);
    }
    // Window edge: greatest - counter must be < 2048.
    assert.equal(w.accept(3000 - REPLAY_WINDOW_SIZE + 1), true);
    assert.equal(w.check(3000 - REPLAY_WINDOW_SIZE), false);
    assert.equal(w.accept(3000 - REPLAY_WINDOW_SIZE), false);
    assert.equal(w.accept(0), false, 'too old');
  });

  void it('the first packet may carry any counter, 0 included', () => {
    const w = new ReplayWindow();
    assert.equal(w.greatest, -1);
    assert.equal(w.accept(0), true);
    assert.equal(w.accept(0), false);
    const w2 = new ReplayWindow();
    assert.equal(w2.accept(123_456), true);
    assert.equal(w2.accept(123_455), true);
  });

  void it('a huge jump clears the whole ring and old counters become too old', () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 5000; c++) w.accept(c);
    const far = 2 ** 40 + 17;
    assert.equal(w.accept(far), true);
    assert.equal(w.accept(4999), false);
    for (let c = far - REPLAY_WINDOW_SIZE + 1; c < far; c++) assert.equal(w.check(c), true, 'nothing stale survives in the ring');
    assert.equal(w.accept(far - 1), true);
    assert.equal(w.accept(far - 1), false);
  });

  void it('refuses counters at or beyond the limit, negative, fractional, unsafe', () => {
    const w = new ReplayWindow(REPLAY_WINDOW_SIZE, 1000);
    assert.equal(w.accept(999), true);
    assert.equal(w.accept(1000), false);
    const w2 = new ReplayWindow();
    for (const c of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, Number.MAX_SAFE_INTEGER]) assert.equal(w2.accept(c), false, `${c}`);
    assert.equal(w2.accept(Number.MAX_SAFE_INTEGER - 1), true);
    assert.equal(w2.greatest, Number.MAX_SAFE_INTEGER - 1);
  });

  void it('check() does not change state; update() refusals change nothing', () => {
    const w = new ReplayWindow();
    w.accept(100);
    w.check(5000);
    assert.equal(w.greatest, 100);
    assert.equal(w.accept(99), true);
  });

  void it('matches a naive model on random traffic (reordering, duplicates, jumps)', () => {
    for (const windowSize of [REPLAY_WINDOW_SIZE, 64, 1, 4064]) {
      const w = new ReplayWindow(windowSize);
      const seen = new Set<number>();
      let greatest = -1;
      let base = 0;
      for (let i = 0; i < 30_000; i++) {
        const r = randomInt(0, 100);
        if (r < 2) base += randomInt(0, 100_000); // jump
        const c = Math.max(0, base + randomInt(-windowSize - 50, 60));
        if (r > 70) base += 1;
        const expected = !seen.has(c) && (c > greatest || greatest - c < windowSize);
        assert.equal(w.check(c), expected, `window ${windowSize} counter ${c} greatest ${greatest}`);
        assert.equal(w.update(c), expected);
        if (expected) {
          seen.add(c);
          greatest = Math.max(greatest, c);
        }
      }
    }
  });

  void it('reset() forgets everything; bad window sizes are refused', () => {
    const w = new ReplayWindow();
    w.accept(5);
    w.reset();
    assert.equal(w.accept(5), true);
    assert.throws(() => new ReplayWindow(0), RangeError);
    assert.throws(() => new ReplayWindow(5000), RangeError);
  });
});
