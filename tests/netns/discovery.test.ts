// LAN discovery with real packets: a LAN namespace with a fake lamp announcing "_http._tcp" over mDNS, and the vCPE
// namespace running Avahi (on a private D-Bus) and the discovery code itself. Discovery must find the lamp with its
// name, address, port and MAC, through mdns+Avahi and the neighbour table. Root only; cleans up whatever happens.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DiscoveredDevice } from '../../agent/src/discovery/types.js';
import { startAvahi, type AvahiHandle } from '../../scripts/netns/avahi.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const DIST = join(ROOT, 'dist/agent/src/discovery/testing');
const PREFIX = `ntd${process.pid % 100000}`;
const NS_LAN = `${PREFIX}-lan`;
const NS_VCPE = `${PREFIX}-vcpe`;
const IF_LAN = `${PREFIX}l`;
const IF_VCPE = `${PREFIX}v`;
const GW = '192.168.77.1';
const LAMP_IP = '192.168.77.10';

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** What this test started, so that cleanup (also from an exit handler) undoes exactly that. */
const made = { children: [] as ChildProcess[], namespaces: [] as string[], avahi: undefined as AvahiHandle | undefined };

function cleanup(): void {
  for (const c of made.children.reverse()) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  made.children = [];
  made.avahi?.stop();
  made.avahi = undefined;
  for (const ns of made.namespaces) spawnSync('ip', ['netns', 'del', ns]);
  made.namespaces = [];
}

/** Starts a child and resolves once its output (stdout or stderr) contains `ready`. */
function startChild(cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = process.env, timeoutMs = 10_000): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    made.children.push(child);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} not ready in ${timeoutMs} ms: ${out}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolvePromise({ child, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}) before it was ready: ${out}`));
    });
  });
}

describe('LAN discovery through Avahi and the neighbour table (netns)', () => {
  let env: NodeJS.ProcessEnv;
  let lampMac = '';

  before(async () => {
    process.on('exit', cleanup);
    // Two namespaces joined by a veth pair: the LAN (the lamp) and the vCPE (Avahi, discovery).
    for (const ns of [NS_LAN, NS_VCPE]) {
      sh('ip', ['netns', 'add', ns]);
      made.namespaces.push(ns);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    sh('ip', ['link', 'add', IF_VCPE, 'netns', NS_VCPE, 'type', 'veth', 'peer', 'name', IF_LAN, 'netns', NS_LAN]);
    sh('ip', ['-n', NS_VCPE, 'addr', 'add', `${GW}/24`, 'dev', IF_VCPE]);
    sh('ip', ['-n', NS_LAN, 'addr', 'add', `${LAMP_IP}/24`, 'dev', IF_LAN]);
    sh('ip', ['-n', NS_VCPE, 'link', 'set', IF_VCPE, 'up']);
    sh('ip', ['-n', NS_LAN, 'link', 'set', IF_LAN, 'up']);
    sh('ip', ['-n', NS_LAN, 'route', 'add', 'default', 'via', GW]);
    lampMac = (JSON.parse(sh('ip', ['-n', NS_LAN, '-j', 'link', 'show', IF_LAN])) as { address: string }[])[0]!.address;

    // A private D-Bus and Avahi in the vCPE namespace (scripts/netns/avahi.ts), as the demo and the e2e test use.
    made.avahi = await startAvahi(NS_VCPE, IF_VCPE);
    env = made.avahi.env;
  });

  after(cleanup);

  test('finds "Living Room Lamp" with name, address, port and MAC via mDNS+Avahi and the neighbour table', async () => {
    await startChild(
      'ip',
      ['netns', 'exec', NS_LAN, process.execPath, join(DIST, 'lamp.js'), '--name', 'Living Room Lamp', '--type', '_http._tcp', '--port', '8080', '--host', 'lamp-1', '--ipv4', LAMP_IP, '--gateway', GW],
      /ready/,
    );
    const t0 = Date.now();
    const watch = await startChild('ip', ['netns', 'exec', NS_VCPE, process.execPath, join(DIST, 'watch.js'), '--iface', IF_VCPE, '--poll-ms', '500'], /\n/, env);
    const found = await new Promise<DiscoveredDevice>((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`not found in 15 s; discovery said:\n${watch.output().slice(-3000)}`)), 15_000);
      const check = (): void => {
        for (const line of watch.output().split('\n')) {
          if (!line.startsWith('[')) continue;
          const devices = JSON.parse(line) as DiscoveredDevice[];
          const lamp = devices.find((d) => d.name === 'Living Room Lamp' && d.mac !== null && d.sources.includes('neighbour'));
          if (lamp) {
            clearTimeout(timer);
            resolvePromise(lamp);
            return;
          }
        }
      };
      watch.child.stdout!.on('data', check);
      check();
    });
    const ms = Date.now() - t0;
    console.log(`# discovery found the lamp in ${ms} ms: ${JSON.stringify(found)}`);
    assert.equal(found.ipv4, LAMP_IP);
    assert.equal(found.mac, lampMac);
    assert.equal(found.host, 'lamp-1.local');
    assert.equal(found.online, true);
    assert.deepEqual([...found.sources].sort(), ['mdns', 'neighbour']);
    assert.equal(found.kind, 'lamp');
    const svc = found.services.find((s) => s.type === '_http._tcp');
    assert.ok(svc, 'the _http._tcp service');
    assert.equal(svc.port, 8080);
    assert.equal(svc.name, 'Living Room Lamp');
    assert.deepEqual(svc.txt, { path: '/' });
    assert.ok(readFileSync(`/proc/${watch.child.pid}/cmdline`, 'utf8').includes('watch.js'));
  });

  test('cleans up: no namespace, D-Bus, Avahi, lamp or discovery process is left', async () => {
    const pids = [...made.children.map((c) => c.pid!), ...(made.avahi?.pids ?? [])];
    cleanup();
    await new Promise((r) => setTimeout(r, 200));
    const left = sh('ip', ['netns', 'list']).split('\n').filter((l) => l.startsWith(`${PREFIX}-`));
    assert.deepEqual(left, []);
    for (const pid of pids) assert.equal(existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== '', false, `process ${pid} left`);
  });
});
