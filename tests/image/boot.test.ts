// The agent VM image an ISP boots (issue 14, part 1), built and booted the way an ISP's VM manager would: the image
// from firmware/build-image, a subscriber's NoCloud seed from `ntm provision --seed-iso`, QEMU (software emulation:
// this machine has no KVM) with user networking. Everything is checked from outside the VM: the disk's files read with
// debugfs, and the agent's web page through a port forwarded into the VM's second card, the subscriber's LAN (named
// in the seed's network-config, as an ISP's orchestrator attaches a household's LAN to its vCPE), where the
// subscriber's own setup code (and no other) sets the owner's password and the page names the subscriber's household;
// the same port forwarded to the WAN card finds no page.
// Slow (a build of 10-30 min here, a boot of minutes under TCG): its own command, `scripts/image-test` (the "image" tier).
// NTM_IMAGE_DIR=<a build-image --out directory> boots an image already built instead of building one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NTM, ROOT } from '../lib/ntm.js';
import { recordImageFigures, type ImageFigures } from './figures.js';

const SUBSCRIBER = { id: 'S-0042', household: 'Yamada home' };
/**
 * The VM's cards: the WAN (QEMU user networking with its DHCP and default route, 10.0.2.0/24) and the subscriber's LAN
 * (a second user-network segment, restricted: nothing leaves it but the forwarded port). QEMU's end of the LAN,
 * 192.168.77.2, is where the test's connections to the page come from: a source in the LAN's prefix.
 */
const WAN_MAC = '52:54:00:57:41:4e';
const LAN = { mac: '52:54:00:4c:41:4e', address: '192.168.77.10', prefix: 24, net: '192.168.77.0/24', host: '192.168.77.2' };
/** Boot under TCG on a shared 2-core machine: minutes; the bound only ends a hung boot. */
const READY_TIMEOUT_MS = 25 * 60_000;
const OFFSET = 1024 * 1024; // the root partition starts at 1 MiB (firmware/build-image)

interface Build {
  readonly image_qcow2_mib: number;
  readonly disk_mib: number;
  readonly root_files_mib: number;
  readonly build_s: number;
  readonly packages: string[];
}

function must(cmd: string, args: string[], what: string): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  assert.equal(r.status, 0, `${what} failed: ${r.error?.message ?? ''}${r.stderr.slice(-3000)}`);
  return r.stdout;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((ok) => p.once('exit', ok));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

test('the agent image boots with a subscriber seed: its identity, its setup code, nothing else in it', { timeout: 60 * 60_000 }, async (t) => {
  const tmp = mkdtempSync('/var/tmp/ntm-image-test-');
  let qemu: ChildProcess | undefined;
  try {
    // --- build (or take the one named) ---
    const outDir = process.env.NTM_IMAGE_DIR ?? join(tmp, 'image');
    if (!process.env.NTM_IMAGE_DIR) must('nice', ['-n', '10', join(ROOT, 'firmware/build-image'), '--out', outDir], 'firmware/build-image');
    const image = join(outDir, 'ntm-agent.qcow2');
    const build = JSON.parse(readFileSync(join(outDir, 'build.json'), 'utf8')) as Build;

    await t.test('the disk holds the runtime only: no test tool, compiler, SSH server, key or password', () => {
      const raw = join(tmp, 'disk.raw');
      must('qemu-img', ['convert', '-O', 'raw', image, raw], 'qemu-img convert');
      const fs = `${raw}?offset=${OFFSET}`;
      const cat = (path: string): string => must('debugfs', ['-R', `cat ${path}`, fs], `debugfs cat ${path}`);
      const installed = new Set(
        cat('/var/lib/dpkg/status')
          .split('\n\n')
          .filter((s) => /^Status: install ok installed$/m.test(s))
          .map((s) => /^Package: (\S+)/m.exec(s)?.[1]),
      );
      for (const p of ['avahi-daemon', 'nftables', 'iptables', 'libnetfilter-queue1', 'linux-image-cloud-amd64', 'systemd-sysv']) {
        assert.ok(installed.has(p), `${p} is in the image`);
      }
      for (const p of ['chromium', 'iperf3', 'wireguard-go', 'gcc', 'g++', 'make', 'openssh-server', 'dropbear', 'cloud-init']) {
        assert.ok(!installed.has(p), `${p} is not in the image`);
      }
      assert.deepEqual([...installed].sort(), [...build.packages].sort(), 'build.json lists what the disk holds');
      const rootEntry = cat('/etc/shadow').split('\n').find((l) => l.startsWith('root:'))!;
      assert.match(rootEntry.split(':')[1]!, /^[!*]/, 'root has no password (locked)');
      const ls = (path: string): string => spawnSync('debugfs', ['-R', `stat ${path}`, fs], { encoding: 'utf8' }).stderr;
      for (const p of ['/root/.ssh', '/etc/ssh', '/home']) {
        const listing = must('debugfs', ['-R', `ls -l ${p}`, fs], `debugfs ls ${p}`);
        assert.ok(/File not found/.test(ls(p)) || listing.split('\n').filter((l) => l.trim() !== '').every((l) => / \.\.?\s*$/.test(l)), `${p} is absent or empty`);
      }
      assert.match(cat('/etc/machine-id'), /^$/, 'each VM makes its own machine ID');
      assert.ok(must('debugfs', ['-R', 'stat /usr/bin/node', fs], 'debugfs stat node').includes('Type: regular'), 'Node.js is in the image');
      rmSync(raw);
    });

    // --- the subscriber's seed, as the ISP makes it ---
    const csv = join(tmp, 'subscribers.csv');
    writeFileSync(csv, `id,household,lan_mac,lan_address\n${SUBSCRIBER.id},${SUBSCRIBER.household},${LAN.mac},${LAN.address}/${LAN.prefix}\n`);
    must(process.execPath, [NTM, 'provision', '--subscribers', csv, '--out', join(tmp, 'bundles'), '--seed-iso'], 'ntm provision --seed-iso');
    const bundle = join(tmp, 'bundles', SUBSCRIBER.id);
    const code = readFileSync(join(bundle, 'setup-code'), 'utf8').trim();

    // --- boot ---
    const port = await freePort();
    const wanPort = await freePort();
    const consoleLog = join(tmp, 'console.log');
    const consoleTail = (): string => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8').slice(-6000) : '(no console output)');
    const started = Date.now();
    // One emulated CPU on one host thread, at low priority: other work shares this machine. -snapshot: the image
    // file stays as built. The seed is a second virtio disk, as OpenStack attaches a config drive. The page's port is
    // forwarded on both cards: the LAN's must answer, the WAN's must not.
    qemu = spawn('nice', [
      '-n', '10', 'qemu-system-x86_64', '-accel', 'tcg,thread=single', '-smp', '1', '-m', '1024',
      '-display', 'none', '-monitor', 'none', '-serial', `file:${consoleLog}`, '-no-reboot', '-snapshot',
      '-drive', `file=${image},if=virtio,format=qcow2`,
      '-drive', `file=${join(bundle, 'seed.iso')},if=virtio,format=raw,readonly=on`,
      '-netdev', `user,id=wan,hostfwd=tcp:127.0.0.1:${wanPort}-:8080`, '-device', `virtio-net-pci,netdev=wan,mac=${WAN_MAC}`,
      '-netdev', `user,id=lan,net=${LAN.net},host=${LAN.host},restrict=on,hostfwd=tcp:127.0.0.1:${port}-${LAN.address}:8080`,
      '-device', `virtio-net-pci,netdev=lan,mac=${LAN.mac}`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let qemuErr = '';
    qemu.stderr!.on('data', (b: Buffer) => (qemuErr += b.toString()));
    const base = `http://127.0.0.1:${port}`;
    let session: { setupRequired: boolean } | undefined;
    while (!session) {
      if (qemu.exitCode !== null) assert.fail(`QEMU exited (${qemu.exitCode}): ${qemuErr}\nconsole:\n${consoleTail()}`);
      if (Date.now() - started > READY_TIMEOUT_MS) assert.fail(`the agent's page did not answer in time; console:\n${consoleTail()}`);
      try {
        const r = await fetch(`${base}/api/session`, { signal: AbortSignal.timeout(10_000) });
        if (r.status === 200) session = (await r.json()) as { setupRequired: boolean };
      } catch {
        // not up yet (QEMU forwards the port before the guest listens: the connection is reset)
      }
      if (!session) await sleep(3000);
    }
    const bootToReadyS = Math.round((Date.now() - started) / 100) / 10;
    assert.equal(session.setupRequired, true, 'a fresh agent waits for its owner');
    assert.match(readFileSync(consoleLog, 'utf8'), new RegExp(`installed the configuration of ${SUBSCRIBER.household}`), 'first boot installed the seed\'s bundle');
    assert.match(readFileSync(consoleLog, 'utf8'), new RegExp(`household LAN: \\S+ \\(${LAN.mac}\\) ${LAN.address.replace(/\./g, '\\.')}/${LAN.prefix}`), 'first boot took the seed\'s LAN card');
    const wan = await fetch(`http://127.0.0.1:${wanPort}/api/session`, { signal: AbortSignal.timeout(30_000) }).then((r) => `HTTP ${r.status}`, () => 'no answer');
    assert.equal(wan, 'no answer', 'the page does not answer on the WAN card');

    const setup = (setupCode: string) =>
      fetch(`${base}/api/setup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ setupCode, password: 'correct horse battery staple' }),
        signal: AbortSignal.timeout(120_000),
      });
    const other = code.replace(/[A-Z0-9](?=-)/, (c) => (c === 'A' ? 'B' : 'A'));
    assert.equal((await setup(other)).status, 403, 'a code that is not this subscriber\'s is refused');
    const ok = await setup(code);
    const body = (await ok.json()) as { authenticated: boolean; household: string };
    assert.equal(ok.status, 201, JSON.stringify(body));
    assert.equal(body.authenticated, true);
    assert.equal(body.household, SUBSCRIBER.household, 'the agent is the subscriber\'s household');
    assert.equal((await setup(code)).status, 409, 'the code works once');

    const figures: ImageFigures = {
      image_qcow2_mib: build.image_qcow2_mib,
      disk_mib: build.disk_mib,
      root_files_mib: build.root_files_mib,
      packages: build.packages.length,
      build_s: build.build_s,
      boot_to_ready_s: bootToReadyS,
      accel: 'tcg',
    };
    console.log(JSON.stringify({ image: figures }));
    recordImageFigures(figures);
  } finally {
    if (qemu) await stop(qemu);
    rmSync(tmp, { recursive: true, force: true });
  }
});
