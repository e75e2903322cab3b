// Test support: the two AgentApi implementations set up for the compliance suite (compliance.ts). The fake is
// FakeAgent over a real SQLite file; the real one is AgentRuntime started as `ntm agent --no-dataplane` would be, with a
// temporary data directory and its DC, RS and tunnel socket on loopback, and phones that enroll as `ntm enroll` does:
// a fresh identity registering with the household's DC over UDP, presenting the token's secret.
import { mkdtempSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSection } from '../../config/schema.js';
import { UdpBind } from '../../dataplane/conn/udp.js';
import { Identity } from '../../protocol/identity.js';
import { TerminalHost } from '../../terminal/host.js';
import { DataEngine } from '../../dataplane/engine.js';
import { PASS_THROUGH } from '../../dataplane/policy.js';
import type { Endpoint } from '../../types/net.js';
import { silentLogger } from '../../util/log.js';
import { decodeEnrollment } from '../enrollment.js';
import { FakeAgent } from '../fake-agent.js';
import { HouseholdStore } from '../household-store.js';
import { AgentRuntime } from '../runtime.js';
import type { AgentHarness } from './compliance.js';

/** FakeAgent over a household store in a temporary directory. */
export async function fakeAgentHarness(): Promise<AgentHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-agent-api-fake-'));
  const store = HouseholdStore.open(join(dir, 'agent.db'));
  const fake = new FakeAgent({ store });
  return Promise.resolve({
    api: fake,
    discover: (found) => fake.discover(found),
    enrollPhone: (token) => Promise.resolve(fake.enrollPhone(token)?.id ?? null),
    close: () => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  });
}

/** A UDP port free on 127.0.0.1 right now (the DC needs its port before it starts: it advertises it). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** The real agent: DC, RS and the appliances' terminals on loopback, SQLite in a temporary directory, no data plane. */
export async function runtimeHarness(): Promise<AgentHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-agent-api-real-'));
  const [dcPort, probePort, rsPort] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
  const agent = loadSection('agent', undefined, {
    'agent.dataDir': dir,
    'agent.advertise': '127.0.0.1',
    'agent.listen': '127.0.0.1:0',
    'agent.dataplane': 'false',
    'agent.web': '',
    'agent.mdns': 'false',
  });
  const dc = loadSection('dc', undefined, { 'dc.dataDir': dir, 'dc.listen': `127.0.0.1:${dcPort}`, 'dc.probePort': probePort });
  const rs = loadSection('rs', undefined, { 'rs.dataDir': dir, 'rs.listen': `127.0.0.1:${rsPort}` });
  const runtime = await AgentRuntime.start({ agent, dc, rs, log: silentLogger, dcIdentity: Identity.generate(), rsIdentity: Identity.generate() });
  const phones: TerminalHost[] = [];

  const enrollPhone = async (token: string): Promise<string | null> => {
    const d = decodeEnrollment(token);
    if (!d.ok) return null;
    const bind = await UdpBind.open({ listen: '127.0.0.1:0' });
    const locals = (): Endpoint[] => [{ family: 4, address: '127.0.0.1', port: bind.port }];
    const host = new TerminalHost({ bind, locals, retry: { initialMs: 200, maxMs: 500, deadlineMs: 2000 } });
    // The engine reads the phone's socket and hands the DC's answers to the host; no packet queues are opened.
    new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH });
    phones.push(host);
    const identity = Identity.generate();
    const t = d.token;
    const node = host.addNode(identity, { id: Buffer.from(t.dcId.slice(2), 'hex'), publicKey: Buffer.from(t.dcPublicKey, 'hex'), endpoint: t.dcEndpoints[0]! }, { name: 'phone', token: t.secret });
    try {
      // The phone stays registered (online) until the harness closes, as a phone running `ntm up` would.
      await node.register();
      return identity.idHex;
    } catch {
      return null;
    }
  };

  return {
    api: runtime,
    discover: (found) => void runtime.store.applyDiscovery(found),
    enrollPhone,
    close: async () => {
      for (const p of phones) await p.close();
      await runtime.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
