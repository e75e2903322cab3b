// Issue 11, "DNS on the phone": `ntm up`'s resolver is the host's resolver (resolv.conf points at 127.0.0.1), so names
// outside .ntm must still resolve, through the resolver it replaced. Real `ntm up` on the natpair topology; the
// upstream is a tiny DNS server on the DC's host answering one A record; .ntm names still come from the DC.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { startNatpair, withDaemons, firstJsonLine } from '../lib/ntm.js';
import type { Testbed } from '../../scripts/netns/index.js';

const UPSTREAM = '192.0.2.2';
const OUTSIDE_NAME = 'example.org';
const OUTSIDE_ADDR = '203.0.113.80';

// One A record for OUTSIDE_NAME, NXDOMAIN for everything else (RFC 1035 §4.1): enough to tell an answer it gave.
const UPSTREAM_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  let off = 12, labels = [];
  while (m[off]) { labels.push(m.toString('latin1', off + 1, off + 1 + m[off])); off += m[off] + 1; }
  off += 5;
  const known = labels.join('.').toLowerCase() === '${OUTSIDE_NAME}' && m.readUInt16BE(off - 4) === 1;
  const head = Buffer.from(m.subarray(0, off));
  head.writeUInt16BE(0x8180 | (known ? 0 : 3), 2);
  head.writeUInt16BE(known ? 1 : 0, 6);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ${OUTSIDE_ADDR.split('.').join(', ')}]);
  s.send(known ? Buffer.concat([head, rr]) : head, r.port, r.address);
});
s.bind(53, '${UPSTREAM}', () => console.log(JSON.stringify({ ready: true })));
`;

/** Resolves `name` (A) through the host's /etc/resolv.conf, as an application would: addresses or the error code. */
async function lookup(tb: Testbed, host: string, name: string): Promise<string> {
  const script = `require('node:dns').promises.resolve4(process.argv[1]).then((a) => console.log(a.join(',')), (e) => console.log(e.code))`;
  const r = await tb.exec(host, [process.execPath, '-e', script, name]);
  return r.stdout.trim();
}

void describe('ntm up as the host resolver (DNS on the phone)', () => {
  test('a name outside .ntm resolves through the resolver of resolv.conf; NAME.ntm still resolves from the DC', async (t) => {
    await withTestbed('natpair', {}, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const upstream = tb.spawn('dc', [process.execPath, '-e', UPSTREAM_SERVER]);
        try {
          await firstJsonLine(upstream, 10_000, 'upstream DNS server');
          // The phone's resolv.conf after `ntm up` took over: ourselves first (skipped), then the resolver we replaced.
          const etc = join('/etc/netns', tb.ns('a'));
          mkdirSync(etc, { recursive: true });
          writeFileSync(join(etc, 'resolv.conf'), `nameserver 127.0.0.1\nnameserver ${UPSTREAM}\noptions timeout:2 attempts:1\n`);
          const p = await startNatpair(tb, dir, started, { dns: { a: '127.0.0.1:53' } });
          // Applications on the phone ask 127.0.0.1 only (the first nameserver answers, even with a refusal).
          writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n');

          assert.equal(await lookup(tb, 'a', OUTSIDE_NAME), OUTSIDE_ADDR, 'an ordinary name resolves through the upstream');
          assert.equal(await lookup(tb, 'a', 'nosuch.example.org'), 'ENOTFOUND', "the upstream's NXDOMAIN comes back as it is");
          assert.equal(await lookup(tb, 'a', 'b.ntm'), String(p.b.ready.v4), 'NAME.ntm resolves from the DC');
          const counts = (await p.a.status()).dns as Record<string, number>;
          assert.equal(counts.forwarded, 2);
        } finally {
          upstream.kill();
        }
      }),
    );
  });
});
