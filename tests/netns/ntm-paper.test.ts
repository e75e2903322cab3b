// Issue 3 on the paper's topology (Fig. 1): real `ntm dc`, `ntm rs` and `ntm up` processes in their own namespaces.
// MN is IPv6-only, CN IPv4-only behind a NAT, so the only way is through the dual-stack RS; TCP and UDP flow between
// virtual addresses, and a capture on the RS shows ciphertext only. Then DC_CN is killed with SIGKILL mid-life.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { startPaper, tempDir, waitFor, type PaperRun } from '../lib/ntm.js';
import { LIB_DIR as LIB } from '../lib/probes.js';
import type { ProbeReport } from '../lib/probe-format.js';

async function stopAll(r: Partial<PaperRun>): Promise<void> {
  await Promise.all([r.mn, r.cn, r.rs, r.dcmn, r.dccn].map((d) => d?.stop()));
}

void describe('NTMobile on the paper topology (MN IPv6-only, CN behind NAT)', () => {
  test('MN reaches CN through the RS; TCP and UDP flow between virtual addresses; the RS sees no plaintext', async () => {
    await withTestbed('paper', { column: 'today' }, async (tb) => {
      const tmp = tempDir();
      let run: Partial<PaperRun> = {};
      try {
        run = await startPaper(tb, tmp.path);
        const { mn, cn } = run as PaperRun;
        const cnV4 = String(cn.ready.v4);
        assert.match(String(mn.ready.v4), /^198\.18\.1\./);
        assert.match(cnV4, /^198\.18\.2\./);
        assert.equal(cn.ready.behindNat, true);
        assert.equal(mn.ready.behindNat, false);

        // Each end pings the RS as it registers, and the pong brings the RS's cookie for its address; a connect sent
        // before that pong would be challenged (a loaded machine once got there first).
        await waitFor('both ends have pinged the RS', async () => {
          const [a, b] = await Promise.all([mn.status(), cn.status()]);
          return Object.keys(a.rsRttMs as object).length > 0 && Object.keys(b.rsRttMs as object).length > 0;
        }, 10_000);
        const conn = (await mn.call({ cmd: 'connect', target: String(cn.ready.id) }, 20_000)) as { ms: number; tunnel: { path: string; state: string } };
        assert.equal(conn.tunnel.state, 'up');
        assert.equal(conn.tunnel.path, 'relayed', 'IPv6-only MN and IPv4-only CN can only meet at the dual-stack RS');
        // Both ends fetched the RS's cookie for their address with their RTT pings, so neither first bind was
        // challenged: a RELAY_CHALLENGE round trip on the tunnel's setup doubled communication start (issue 11 #8).
        const rsCounts = ((await run.rs!.status()) as { counts: Record<string, number> }).counts;
        assert.equal(rsCounts['bind-challenged'] ?? 0, 0, `binds challenged at the RS: ${JSON.stringify(rsCounts)}`);

        // A capture on the RS for the whole exchange.
        const pcap = join(tmp.path, 'rs.pcap');
        const dump = tb.spawn('rs', ['tcpdump', '-i', 'eth0', '-U', '-w', pcap, 'udp', 'port', '7200'], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 500));

        // TCP: a real HTTP server on CN, fetched by curl on MN over the virtual IPv4 and IPv6 addresses.
        const www = join(tmp.path, 'www');
        mkdirSync(www);
        const marker = `plaintext-marker-${randomBytes(12).toString('hex')}`;
        const body = `${marker}\n${randomBytes(48 * 1024).toString('hex')}\n${marker}\n`;
        writeFileSync(join(www, 'file.txt'), body);
        const server = tb.spawn('cn', ['python3', '-m', 'http.server', '--bind', '::', '--directory', www, '8080'], { stdio: 'ignore' });
        await waitFor('http server on CN', async () => (await tb.exec('cn', ['python3', '-c', 'import socket; socket.create_connection(("127.0.0.1", 8080), 1)'])).code === 0);
        const get4 = await tb.exec('mn', ['curl', '-sS', '--max-time', '20', `http://${cnV4}:8080/file.txt`], { timeoutMs: 25_000 });
        assert.equal(get4.code, 0, get4.stderr);
        assert.equal(get4.stdout, body, 'HTTP over virtual IPv4 (MN has no real IPv4 at all)');
        // (CN's kernel has IPv6 disabled, so only its virtual IPv4 exists; inner IPv6 is covered on the household.)

        // UDP: the testbed's echo on CN, probed from MN; CN sees MN's virtual address as the source.
        const echo = tb.spawn('cn', [process.execPath, join(LIB, 'udp-echo.js'), '--port', '7777'], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 300));
        const pr = await tb.exec('mn', [process.execPath, join(LIB, 'udp-probe.js'), '--target', `${cnV4}:7777`, '--count', '5'], { timeoutMs: 20_000 });
        assert.equal(pr.code, 0, pr.stderr);
        const report = JSON.parse(pr.stdout) as ProbeReport;
        assert.ok(report.results[0]!.received >= 4, pr.stdout);
        assert.match(report.results[0]!.observed[0] ?? '', new RegExp(`^${String(mn.ready.v4).replace(/\./g, '\\.')}:`), 'CN sees MN by its virtual address');

        server.kill();
        echo.kill();
        await new Promise((r) => setTimeout(r, 500));
        dump.kill('SIGINT');
        await new Promise((r) => dump.once('exit', r));
        const captured = readFileSync(pcap);
        assert.ok(captured.length > 100_000, `the capture saw the transfer (${captured.length} bytes)`);
        assert.equal(captured.indexOf(marker), -1, 'no plaintext on the RS');
        assert.equal(captured.indexOf(body.slice(200, 264)), -1, 'no plaintext on the RS');
        const rsStatus = await run.rs!.status();
        assert.ok((rsStatus.counts as Record<string, number>).relayed! > 50, JSON.stringify(rsStatus.counts));
      } catch (e) {
        for (const d of [run.mn, run.cn, run.dcmn, run.dccn, run.rs]) if (d) console.error(`--- ${d.host}\n${d.output().slice(-3000)}`);
        throw e;
      } finally {
        await stopAll(run);
        tmp.remove();
      }
    });
  });
});
