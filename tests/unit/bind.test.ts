// The Bind compliance suite against the real sockets on loopback (node:dgram, and the native socket when the addon is
// built) and the fake bind, plus what only the fake promises: borrowed bytes are overwritten, a filter loses packets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UdpBind } from '../../agent/src/dataplane/conn/udp.js';
import { NativeUdpBind } from '../../agent/src/dataplane/conn/native-udp.js';
import { FakeNetwork, type FakeBind } from '../../agent/src/dataplane/conn/fake.js';
import { bindComplianceSuite } from '../../agent/src/dataplane/conn/testing/compliance.js';
import type { Bind } from '../../agent/src/types/net.js';

const loopback = (b: Bind) => ({ family: 4 as const, address: '127.0.0.1', port: b.port });
// Port 9 (discard) on loopback: nobody listens in the test's namespace.
const nowhere = { family: 4 as const, address: '127.0.0.1', port: 9 };

bindComplianceSuite('udp (node:dgram)', { open: () => UdpBind.openDgram({ listen: '127.0.0.1:0' }), endpoint: loopback, nowhere });

const probe = NativeUdpBind.open('127.0.0.1:0');
if (probe) {
  void probe.close();
  bindComplianceSuite('udp (native)', {
    open: async () => NativeUdpBind.open('127.0.0.1:0')!,
    endpoint: loopback,
    nowhere,
  });
}

const net = new FakeNetwork();
let host = 0;
bindComplianceSuite('fake', {
  open: async () => net.open([`10.0.0.${++host}`]),
  endpoint: (b) => (b as FakeBind).endpoint(4),
  nowhere: { family: 4, address: '10.9.9.9', port: 9 },
});

test('fake: bytes lent to the handler are overwritten once it returns', async () => {
  const n = new FakeNetwork();
  const a = n.open(['10.0.0.1']);
  const b = n.open(['10.0.0.2', 'fd00::2']);
  let kept: Buffer | undefined;
  b.onMessage((d) => (kept = d));
  a.send(Buffer.from('secret'), b.endpoint(4));
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(kept && kept.length === 6 && kept.every((x) => x === 0xee));
  // No IPv6 address on a: its IPv6 send is lost, counted.
  a.send(Buffer.from('x'), b.endpoint(6));
  assert.equal(n.counts.unreachable, 1);
  await Promise.all([a.close(), b.close()]);
});

test('fake: the filter loses what a test asks, and the port of a closed bind is free again', async () => {
  const n = new FakeNetwork();
  const a = n.open(['10.0.0.1']);
  const b = n.open(['10.0.0.2'], 7100);
  const got: string[] = [];
  b.onMessage((d) => void got.push(d.toString()));
  n.filter = (d) => d[0] !== 0x21;
  a.send(Buffer.from('!dropped'), b.endpoint());
  a.send(Buffer.from('kept'), b.endpoint());
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, ['kept']);
  assert.equal(n.counts.filtered, 1);
  assert.throws(() => n.open(['10.0.0.2'], 7100), RangeError);
  await b.close();
  assert.equal(n.open(['10.0.0.2'], 7100).port, 7100);
  await a.close();
});
