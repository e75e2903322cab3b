// The PacketSource compliance suite against the in-memory fake (the real NFQUEUE source runs the same cases in
// tests/netns/nfqueue-compliance.test.ts), plus what only the fake can show: borrowed bytes are poisoned.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakePacketSource } from '../../agent/src/dataplane/nfqueue/fake.js';
import { complianceCases, fakeHarness, runCase } from '../../agent/src/dataplane/nfqueue/testing/compliance.js';

void describe('fake packet source: compliance suite', { concurrency: false }, () => {
  const h = fakeHarness(new FakePacketSource({ queue: 7, maxLength: 1024 }));
  for (const c of complianceCases) void test(c.name, () => runCase(c, h, 20000));
});

void describe('fake packet source: its own guarantees', () => {
  void test('bytes lent to the handler are overwritten once the verdict is issued', async () => {
    const src = new FakePacketSource();
    let kept: Uint8Array | undefined;
    src.onPacket((p) => {
      kept = p.data;
      return 'accept';
    });
    const v = await src.inject(Uint8Array.from([0x45, 1, 2, 3]));
    assert.deepEqual(v.data, Uint8Array.from([0x45, 1, 2, 3]));
    assert.ok(kept?.every((b) => b === 0xee));
  });

  void test('the arrival mark is kept unless the verdict sets one; packets before a handler are dropped', async () => {
    const src = new FakePacketSource();
    const early = await src.inject(Uint8Array.from([0x45]), { mark: 5 });
    assert.equal(early.verdict, 'drop');
    assert.equal(src.counters.errors, 1);
    let seenMark = -1;
    src.onPacket((p) => {
      seenMark = p.mark;
      if (p.data[1] === 1) p.setMark(9);
      return 'accept';
    });
    assert.equal((await src.inject(Uint8Array.from([0x45, 0]), { mark: 5 })).mark, 5);
    assert.equal(seenMark, 5);
    assert.equal((await src.inject(Uint8Array.from([0x45, 1]), { mark: 5 })).mark, 9);
  });

  void test('defer() outside the handler call is refused (the view is borrowed)', async () => {
    const src = new FakePacketSource();
    let view: { defer(): unknown } | undefined;
    src.onPacket((p) => {
      view = p;
      return 'accept';
    });
    await src.inject(Uint8Array.from([0x45]));
    assert.throws(() => view?.defer());
  });
});
