// The README's run command (after scripts/setup): brings up the demo household in network namespaces — a lamp and a
// camera on the home LAN, the vCPE with the agent, the ISP, and a phone behind Wi-Fi/LTE NATs — starts the agent,
// takes a short guided tour (pair the appliances, enroll the phone, grant access, reach the lamp through the tunnel,
// move the phone to LTE), prints what to try next, and on Ctrl-C removes everything it created.
//
// --ledger evm: the household's DC records to the NtmRegistry contract on a local chain (anvil, started by
// scripts/chain.ts on the ISP side's Internet server, the contract deployed there) instead of its SQLite hash chain
// (issue 12, docs/ledger.md); the chain goes with the namespaces at the end.
import { createServer, connect, type Server } from 'node:net';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { up, down, type Testbed } from './netns/index.js';
import { startAvahi, type AvahiHandle } from './netns/avahi.js';
import { NODE_FLAGS } from '../agent/src/cmd/node-flags.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NTM = join(ROOT, 'dist/agent/src/cmd/ntm.js');
const PREFIX = 'demo';
const STATE = '/run/ntm-demo';
const WEB_PORT = Number(process.env.NTM_DEMO_PORT ?? 8080);

const say = (s = '') => process.stdout.write(s + '\n');
const step = (s: string) => say(`\n\x1b[1m▸ ${s}\x1b[0m`);

interface Daemon {
  proc: ChildProcess;
  ready: Record<string, unknown>;
}

function start(tb: Testbed, host: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv = process.env, readyTimeoutMs = 30_000): Promise<Daemon> {
  const proc = tb.spawn(host, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const log = createWriteStream(logFile);
  proc.stderr!.pipe(log);
  return new Promise((res, rej) => {
    let buf = '';
    const t = setTimeout(() => rej(new Error(`${argv.join(' ')} on ${host} did not become ready; see ${logFile}`)), readyTimeoutMs);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      log.write(d);
      buf += d;
      for (const line of buf.split('\n').slice(0, -1)) {
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.ready || j.enrolled) {
            clearTimeout(t);
            res({ proc, ready: j });
          }
        } catch {
          // log line
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    proc.on('exit', (c) => {
      clearTimeout(t);
      rej(new Error(`${argv[2] ?? argv[0]} on ${host} exited (${c}); see ${logFile}`));
    });
  });
}

async function ntm(tb: Testbed, host: string, args: string[]): Promise<unknown> {
  const r = await tb.exec(host, [process.execPath, NTM, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`ntm ${args.join(' ')}: ${r.stderr.trim()}`);
  const out = r.stdout.trim();
  try {
    return JSON.parse(out.slice(out.lastIndexOf('\n{') + 1));
  } catch {
    return out;
  }
}

/** localhost:WEB_PORT → the agent's web UI on its unix socket (the agent lives in the vcpe namespace). */
function forward(socketPath: string): Promise<Server> {
  const srv = createServer((c) => {
    const u = connect(socketPath);
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  return new Promise((res, rej) => {
    srv.once('error', rej);
    srv.listen(WEB_PORT, '127.0.0.1', () => res(srv));
  });
}

async function main(): Promise<void> {
  const tour = !process.argv.includes('--no-tour');
  const li = process.argv.indexOf('--ledger');
  const ledger = li >= 0 ? process.argv[li + 1] : 'sqlite';
  if (ledger !== 'sqlite' && ledger !== 'evm') throw new Error(`--ledger: "sqlite" or "evm", not ${String(ledger)}`);
  say('NTMobile agent appliance — demo household');
  down(PREFIX); // a previous demo that was killed hard
  rmSync(STATE, { recursive: true, force: true });
  mkdirSync(STATE, { recursive: true });
  const agentDir = join(STATE, 'agent');
  const phoneDir = join(STATE, 'phone');

  step('Bringing up the household: LAN (lamp, camera, laptop) — vCPE — ISP — phone (Wi-Fi / LTE, behind NATs)');
  const tb = await up('household', { prefix: PREFIX });
  let web: Server | undefined;
  let avahi: AvahiHandle | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return; // a second Ctrl-C while the namespaces come down
    stopping = true;
    web?.close();
    avahi?.stop();
    say('\nStopping: removing the namespaces, rules and processes the demo created…');
    await tb.down();
    rmSync(STATE, { recursive: true, force: true });
    say('Done.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  try {
    tb.spawn('lamp', [process.execPath, join(ROOT, 'dist/scripts/appliances/lamp.js'), '--port', '80', '--mdns'], { stdio: 'ignore', env: { ...process.env, LAMP_ADDR: '192.168.1.10' } });
    tb.spawn('camera', [process.execPath, join(ROOT, 'dist/scripts/appliances/camera.js'), '--port', '5004'], { stdio: 'ignore' });
    avahi = await startAvahi(tb.ns('vcpe'), 'br0');

    const ledgerArgs: string[] = [];
    if (ledger === 'evm') {
      step('Starting a local chain (anvil) on the Internet server and deploying the NtmRegistry contract');
      // The agent's DC key is its chain account: created now, so the chain can give it ether for gas.
      const dcId = (await ntm(tb, 'vcpe', ['dc', '--data-dir', agentDir, '--print-id'])) as { id: string };
      const chain = await start(tb, 'web', [process.execPath, join(ROOT, 'dist/scripts/chain.js'), '--host', '203.0.113.2', '--port', '8545', '--block-time', '1', '--deploy', '--fund', dcId.id], join(STATE, 'chain.log'));
      const c = chain.ready as { rpcUrl: string; contract: string; deployBlock: number };
      say(`  chain ${c.rpcUrl}, contract ${c.contract} (block ${c.deployBlock}); the DC's account ${dcId.id}`);
      ledgerArgs.push('--set', 'dc.ledger=evm', '--set', `dc.chainRpc=${c.rpcUrl}`, '--set', `dc.chainContract=${c.contract}`, '--set', `dc.chainDeployBlock=${c.deployBlock}`);
    }

    step(`Starting the agent on the vCPE (embedded DC and RS, web UI; ledger: ${ledger})`);
    const webSock = join(STATE, 'web.sock');
    const agent = await start(
      tb,
      'vcpe',
      [process.execPath, ...NODE_FLAGS.agent, NTM, 'agent', '--data-dir', agentDir, '--web', 'lan:80', '--web-socket', webSock, ...ledgerArgs],
      join(STATE, 'agent.log'),
      avahi.env,
    );
    say(`  agent ${String(agent.ready.id)} on ${(agent.ready.wan as string[]).join(', ')}`);
    web = await forward(webSock);
    const code = readFileSync(join(agentDir, 'setup-code'), 'utf8').trim();
    say(`  web UI: http://localhost:${WEB_PORT}/   (first start: set the owner's password with the setup code ${code})`);

    if (tour) {
      step('Pairing the lamp and the camera (they know nothing of NTMobile)');
      const lamp = (await ntm(tb, 'vcpe', ['agent', 'pair', '--data-dir', agentDir, '--json', '--name', 'lamp', '--kind', 'lamp', '--ip', '192.168.1.10', '--ipv6', 'fd6e:746d:1::10'])) as {
        id: number;
        virtualV4: string;
      };
      const cam = (await ntm(tb, 'vcpe', ['agent', 'pair', '--data-dir', agentDir, '--json', '--name', 'camera', '--kind', 'camera', '--ip', '192.168.1.11'])) as { id: number; virtualV4: string };
      say(`  lamp → virtual ${lamp.virtualV4}; camera → virtual ${cam.virtualV4}`);

      step('Enrolling the phone with a one-time token');
      const enr = (await ntm(tb, 'vcpe', ['agent', 'enroll', '--data-dir', agentDir, '--json', '--name', 'Phone'])) as { link: string };
      const joined = (await ntm(tb, 'phone', ['enroll', '--data-dir', phoneDir, '--name', 'phone', enr.link])) as { id: string };
      say(`  phone ${joined.id} joined`);
      await ntm(tb, 'vcpe', ['agent', 'grant', '--data-dir', agentDir, '--json', '--phone', joined.id, '--device', String(lamp.id)]);
      await ntm(tb, 'vcpe', ['agent', 'grant', '--data-dir', agentDir, '--json', '--phone', joined.id, '--device', String(cam.id), '--ports', '5004']);
      say('  granted: phone → lamp (all ports), phone → camera (UDP 5004)');

      step('Starting the phone (ntm up) on Wi-Fi, behind its NAT');
      tb.setResolver('phone', '127.0.0.1');
      const phone = await start(tb, 'phone', [process.execPath, NTM, 'up', '--data-dir', phoneDir], join(STATE, 'phone.log'));
      say(`  phone's virtual addresses: ${String(phone.ready.v4)}, ${String(phone.ready.v6)}`);

      step('From the phone: curl http://lamp.ntm/  (through the end-to-end encrypted tunnel)');
      const page = await tb.exec('phone', ['curl', '-sS', '--max-time', '20', 'http://lamp.ntm/']);
      say(`  ${page.code === 0 ? page.stdout.trim() : 'failed: ' + page.stderr.trim()}`);

      step('The phone moves from Wi-Fi to LTE; its tunnel follows');
      await tb.move('phone', 'lte');
      const again = await tb.exec('phone', ['curl', '-sS', '--max-time', '20', 'http://lamp.ntm/api/state']);
      say(`  after the move: ${again.code === 0 ? again.stdout.trim() : 'failed: ' + again.stderr.trim()}`);
    }

    step('Try it yourself');
    say(`  web UI          http://localhost:${WEB_PORT}/   (setup code ${code})`);
    say(`  from the phone  scripts/testbed exec --name ${PREFIX} phone -- curl http://lamp.ntm/`);
    say(`  phone status    node ${NTM} status --data-dir ${phoneDir}`);
    say(`  agent status    node ${NTM} agent status --data-dir ${agentDir}`);
    say(`  move the phone  scripts/testbed move --name ${PREFIX} phone wifi    (or lte)`);
    say(`  logs            ${STATE}/*.log`);
    say('\nCtrl-C stops the demo and removes everything it created.');
  } catch (e) {
    say(`\ndemo failed: ${(e as Error).message}`);
    await stop(1);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`demo: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
