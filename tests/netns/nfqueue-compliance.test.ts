// The PacketSource compliance suite against the real NFQUEUE source, with real UDP datagrams inside a network
// namespace of our own (the same cases run against the fake in tests/unit/packet-source.test.ts). Root only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { complianceCases, complianceRules } from '../../agent/src/dataplane/nfqueue/testing/compliance.js';
import { Namespaces } from '../../agent/src/dataplane/nfqueue/testing/netns.js';

const DIST = resolve(import.meta.dirname, '..', '..');
const CHILD = join(DIST, 'agent/src/dataplane/nfqueue/testing/compliance-child.js');
const QUEUE = 4711;

interface CaseResult {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

for (const kind of ['nfqueue', 'batch'] as const) {
  void describe(`NFQUEUE source compliance, ${kind === 'batch' ? 'native batched source' : 'node-nfqueue source'} (real packets in a namespace)`, { concurrency: false }, () => {
    const nets = new Namespaces(kind === 'batch' ? 'cb' : 'c');
    const results = new Map<string, CaseResult>();
    let childFailure = '';

    before(async () => {
      const ns = await nets.add('q');
      const rules = complianceRules(QUEUE);
      await nets.must(ns, 'iptables-nft-restore', ['-w', '--noflush'], rules.v4);
      await nets.must(ns, 'ip6tables-nft-restore', ['-w', '--noflush'], rules.v6);
      const r = await nets.run(ns, process.execPath, ['--enable-source-maps', CHILD, String(QUEUE), kind]);
      for (const line of r.stdout.split('\n')) {
        if (!line.startsWith('{')) continue;
        const o = JSON.parse(line) as CaseResult & { done?: boolean };
        if (!o.done) results.set(o.name, o);
      }
      if (r.code !== 0) childFailure = `child exited ${r.code}: ${r.stderr}`;
    });

    after(async () => {
      await nets.destroy();
      assert.deepEqual(await nets.leftovers(), []);
    });

    for (const c of complianceCases) {
      void test(c.name, () => {
        const r = results.get(c.name);
        assert.ok(r, `no result for this case: ${childFailure}`);
        assert.ok(r.ok, r.error);
      });
    }
  });
}
