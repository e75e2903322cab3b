// Test support: the compliance suite every `Bind` passes (types/net.ts): the real UdpBind (node:dgram and the native
// socket) on loopback and the fake bind of dataplane/conn/fake.ts, both in tests/unit/bind.test.ts. It holds only what
// the roles rely on: whole datagrams, the sender's endpoint, sends that never throw, a close that stops both ways.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Bind, Endpoint } from '../../../types/net.js';

export interface BindHarness {
  /** A new bind (its endpoint is `endpoint(bind)`). */
  open(): Promise<Bind>;
  /** Where the others send to reach `bind`. */
  endpoint(bind: Bind): Endpoint;
  /** An endpoint nobody listens on. */
  readonly nowhere: Endpoint;
}

interface Inbox {
  readonly got: Array<{ data: Buffer; from: Endpoint }>;
  wait(n: number, ms?: number): Promise<number>;
}

function inbox(b: Bind): Inbox {
  const got: Array<{ data: Buffer; from: Endpoint }> = [];
  // The data is borrowed: copied before the handler returns.
  b.onMessage((data, from) => void got.push({ data: Buffer.from(data), from }));
  return {
    got,
    async wait(n, ms = 2000) {
      const end = Date.now() + ms;
      while (got.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
      return got.length;
    },
  };
}

const settle = (ms = 50): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Registers the suite's cases under `name` (call at the top level of a node:test file). */
export function bindComplianceSuite(name: string, h: BindHarness): void {
  void describe(`${name}: bind compliance`, () => {
    const opened: Bind[] = [];
    const open = async (): Promise<Bind> => {
      const b = await h.open();
      opened.push(b);
      return b;
    };
    after(() => Promise.all(opened.map((b) => b.close())));

    void test("a datagram arrives whole, from the sender's endpoint", async () => {
      const a = await open();
      const b = await open();
      assert.ok(Number.isInteger(a.port) && a.port > 0);
      const rx = inbox(b);
      a.send(Buffer.from('hello'), h.endpoint(b));
      assert.equal(await rx.wait(1), 1);
      assert.equal(rx.got[0]!.data.toString(), 'hello');
      assert.deepEqual(rx.got[0]!.from, h.endpoint(a));
      // And the answer goes back to the endpoint it came from.
      const ra = inbox(a);
      b.send(Buffer.from('hi'), rx.got[0]!.from);
      assert.equal(await ra.wait(1), 1);
      assert.equal(ra.got[0]!.data.toString(), 'hi');
    });

    void test('datagram boundaries are kept, from 1 byte to 8,000', async () => {
      const a = await open();
      const b = await open();
      const rx = inbox(b);
      const sizes = [1, 4, 148, 1200, 1400, 8000];
      for (const [i, n] of sizes.entries()) a.send(Buffer.alloc(n, i + 1), h.endpoint(b));
      assert.equal(await rx.wait(sizes.length), sizes.length);
      const bySize = new Map(rx.got.map((g) => [g.data.length, g.data]));
      for (const [i, n] of sizes.entries()) {
        const d = bySize.get(n);
        assert.ok(d, `${n} bytes arrived as one datagram`);
        assert.ok(d.every((x) => x === i + 1));
      }
    });

    void test('a burst of 200 datagrams from one sender all arrive', async () => {
      const a = await open();
      const b = await open();
      const rx = inbox(b);
      for (let i = 0; i < 200; i++) {
        const d = Buffer.alloc(64);
        d.writeUInt32BE(i, 0);
        a.send(d, h.endpoint(b));
      }
      assert.equal(await rx.wait(200), 200);
      assert.deepEqual(new Set(rx.got.map((g) => g.data.readUInt32BE(0))).size, 200);
    });

    void test('a send to nobody neither throws nor stops the bind', async () => {
      const a = await open();
      const b = await open();
      const rx = inbox(b);
      a.send(Buffer.from('lost'), h.nowhere);
      await settle();
      a.send(Buffer.from('kept'), h.endpoint(b));
      assert.equal(await rx.wait(1), 1);
      assert.equal(rx.got[0]!.data.toString(), 'kept');
    });

    void test('onMessage replaces the handler', async () => {
      const a = await open();
      const b = await open();
      const first = inbox(b);
      const second = inbox(b);
      a.send(Buffer.from('x'), h.endpoint(b));
      assert.equal(await second.wait(1), 1);
      assert.equal(first.got.length, 0);
    });

    void test('after close nothing arrives, sends are silently dropped, and close is idempotent', async () => {
      const a = await open();
      const b = await open();
      const rx = inbox(b);
      const epB = h.endpoint(b);
      await b.close();
      a.send(Buffer.from('to a closed bind'), epB);
      await settle();
      assert.equal(rx.got.length, 0);
      const ra = inbox(a);
      await a.close();
      assert.doesNotThrow(() => a.send(Buffer.from('from a closed bind'), epB));
      await a.close();
      await settle();
      assert.equal(ra.got.length, 0);
    });
  });
}
