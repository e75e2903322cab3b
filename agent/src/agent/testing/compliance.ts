// Test support: the compliance suite every AgentApi passes (as js-libp2p's interface-compliance-tests): the real
// AgentRuntime (its DC, RS and terminal host on loopback, a real SQLite file, the data plane off) and FakeAgent run the
// same cases (tests/unit/agent-api-compliance.test.ts), so the web UI, written against the fake, sees the real agent
// behave the same. The cases are what the household page relies on: pairing and unpairing, phones joining with a
// one-time enrollment, grants, the event log and its live feed, and refusals as typed NtmErrors whose class says
// which 4xx the web answers (InputError 400, NotFoundError 404, ConflictError 409; web-ui/server/errors.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DiscoveredDevice } from '../../discovery/types.js';
import { ConflictError, InputError, NotFoundError, NtmError } from '../../types/errors.js';
import type { AgentApi, AgentEvent, DeviceView } from '../../types/household.js';

export interface AgentHarness {
  readonly api: AgentApi;
  /** LAN discovery found these devices (what the agent's discovery hands the household store). */
  discover(found: readonly DiscoveredDevice[]): void;
  /**
   * What `ntm enroll <token>` on a phone leads to: a new phone identity presents the token to the household's DC.
   * Resolves with the phone's NTM ID when admitted, null when refused.
   */
  enrollPhone(token: string): Promise<string | null>;
  close(): Promise<void>;
}

export type AgentHarnessFactory = () => Promise<AgentHarness>;

const LAMP: DiscoveredDevice = {
  name: 'Living Room Lamp',
  kind: 'lamp',
  mac: '02:00:00:00:00:10',
  ipv4: '192.168.1.10',
  ipv6: null,
  host: 'living-room-lamp.local',
  online: true,
  sources: ['mdns', 'neighbour'],
  lastSeen: Date.now(),
  services: [],
};

const PRINTER: DiscoveredDevice = { ...LAMP, name: 'Office Printer', kind: 'printer', mac: '02:00:00:00:00:14', ipv4: '192.168.1.14', host: 'office-printer.local' };

/** Asserts `fn` is refused with an exposable NtmError of class `cls` (and, when given, naming `field`). */
async function refused(fn: () => unknown, cls: typeof InputError | typeof NotFoundError | typeof ConflictError, field?: string): Promise<void> {
  await assert.rejects(
    async () => fn(),
    (e: unknown) => {
      assert.ok(e instanceof NtmError, `an NtmError, not ${String(e)}`);
      assert.ok(e instanceof cls, `${e.name} (${e.message}) should be a ${cls.name}`);
      assert.equal(e.expose, true, 'its message may be shown to the household');
      assert.ok(e.message.length > 0);
      if (field !== undefined) assert.equal((e as InputError).field, field);
      return true;
    },
  );
}

const ID = /^0x[0-9a-f]{40}$/;
const UNKNOWN_PHONE = '0x' + 'ab'.repeat(20);

/**
 * Registers the suite under `name`: one harness for all cases, which run in order and build on each other (the lamp
 * paired first is the one phones are granted), as a household would use the page.
 */
export function agentApiCompliance(name: string, factory: AgentHarnessFactory): void {
  void describe(`AgentApi compliance: ${name}`, { concurrency: false }, () => {
    let h: AgentHarness;
    let api: AgentApi;
    let lamp: DeviceView;
    let camera: DeviceView;
    let phone: string;
    const heard: AgentEvent[] = [];
    let unsubscribe: () => void = () => undefined;

    before(async () => {
      h = await factory();
      api = h.api;
      unsubscribe = api.onEvent((e) => heard.push(e));
    });
    after(async () => {
      unsubscribe();
      await h?.close();
    });

    void test('a discovered device is listed, not paired, with what discovery said', () => {
      h.discover([LAMP]);
      const d = api.devices().find((x) => x.mac === LAMP.mac);
      assert.ok(d, 'the lamp is listed');
      assert.equal(d.name, 'Living Room Lamp');
      assert.equal(d.kind, 'lamp');
      assert.equal(d.ipv4, '192.168.1.10');
      assert.equal(d.online, true);
      assert.equal(d.paired, false);
      assert.equal(d.ntmId, null);
      assert.equal(d.ntmName, null);
      assert.deepEqual([...d.sources].sort(), ['mdns', 'neighbour']);
    });

    void test('pairing a discovered device gives it an NTM identity, virtual addresses and a .ntm name', async () => {
      const found = api.devices().find((x) => x.mac === LAMP.mac)!;
      lamp = await api.pair({ deviceId: found.id });
      assert.equal(lamp.id, found.id);
      assert.equal(lamp.paired, true);
      assert.match(lamp.ntmId ?? '', ID);
      assert.match(lamp.virtualV4 ?? '', /^\d+\.\d+\.\d+\.\d+$/);
      assert.match(lamp.virtualV6 ?? '', /:/);
      assert.match(lamp.ntmName ?? '', /^living-room-lamp(-[0-9a-f]+)?\.ntm$/);
      const listed = api.devices();
      assert.deepEqual(listed[0], lamp, 'paired devices come first, as pair() returned it');
    });

    void test('pairing by hand: a name and an address; the device is marked as added by hand', async () => {
      camera = await api.pair({ name: 'Hall Camera', kind: 'camera', ipv4: '192.168.1.11' });
      assert.equal(camera.paired, true);
      assert.equal(camera.name, 'Hall Camera');
      assert.equal(camera.ipv4, '192.168.1.11');
      assert.ok(camera.sources.includes('manual'));
      assert.notEqual(camera.ntmId, lamp.ntmId);
      assert.notEqual(camera.virtualV4, lamp.virtualV4);
    });

    void test('a bad pairing request is refused with the field at fault, and costs nothing', async () => {
      const before = api.devices().length;
      await refused(() => api.pair({ ipv4: '192.168.1.12' }), InputError, 'name');
      await refused(() => api.pair({ name: 'Printer' }), InputError, 'ipv4');
      await refused(() => api.pair({ name: 'Printer', ipv4: '192.168.1.300' }), InputError, 'ipv4');
      await refused(() => api.pair({ name: 'Printer', mac: 'not a mac' }), InputError, 'mac');
      await refused(() => api.pair({ deviceId: 99999 }), NotFoundError);
      await refused(() => api.pair({ deviceId: lamp.id }), ConflictError);
      await refused(() => api.pair({ name: 'hall camera', ipv4: '192.168.1.13' }), ConflictError);
      assert.equal(api.devices().length, before, 'no device was added by a refused request');
    });

    void test('an enrollment is a one-time token, a link and a QR code; names of waiting phones are unique', async () => {
      await refused(() => api.createEnrollment(''), InputError, 'name');
      const e = api.createEnrollment('Anna’s phone');
      assert.equal(e.name, 'Anna’s phone');
      assert.ok(e.token.length > 20);
      assert.ok(e.link.startsWith('ntm://enroll#'), e.link);
      assert.match(e.qrSvg, /^<svg[\s\S]*<\/svg>\s*$/);
      assert.ok(Date.parse(e.expiresAt) > Date.now());
      await refused(() => api.createEnrollment('anna’s phone'), ConflictError);

      const id = await h.enrollPhone(e.token);
      assert.match(id ?? '', ID, 'the phone is admitted with its token');
      phone = id!;
      const p = api.phones().find((x) => x.id === phone);
      assert.ok(p, 'the phone is listed');
      assert.equal(p.name, 'Anna’s phone');
      assert.equal(p.online, true);
      assert.match(p.virtualV4 ?? '', /^\d+\.\d+\.\d+\.\d+$/);
      assert.ok(Number.isFinite(Date.parse(p.enrolledAt)));

      assert.equal(await h.enrollPhone(e.token), null, 'a used token admits no second phone');
      assert.equal(api.phones().length, 1);
    });

    void test('grants: a phone may reach a paired device on some ports, or all; revoking ends it', async () => {
      assert.deepEqual(api.grants(), [], 'nothing is reachable until granted');
      api.setGrant(phone, lamp.id, [443, 80, 80]);
      assert.deepEqual(api.grants(), [{ phoneId: phone, deviceId: lamp.id, ports: [80, 443] }]);
      api.setGrant(phone.toUpperCase().replace('0X', '0x'), lamp.id, []);
      assert.deepEqual(api.grants(), [{ phoneId: phone, deviceId: lamp.id, ports: [] }], 'one grant per pair, replaced; IDs in any case');
      api.setGrant(phone, camera.id, [554]);
      assert.equal(api.grants().length, 2);
      api.revokeGrant(phone, camera.id);
      assert.deepEqual(api.grants(), [{ phoneId: phone, deviceId: lamp.id, ports: [] }]);
      await refused(() => api.revokeGrant(phone, camera.id), NotFoundError);
    });

    void test('bad grants are refused: ports, unknown phones and devices, unpaired devices', async () => {
      await refused(() => api.setGrant(phone, lamp.id, [70000]), InputError, 'ports');
      await refused(() => api.setGrant(phone, lamp.id, [0]), InputError, 'ports');
      await refused(() => api.setGrant('not an id', lamp.id, []), InputError, 'phoneId');
      await refused(() => api.setGrant(UNKNOWN_PHONE, lamp.id, []), NotFoundError);
      await refused(() => api.setGrant(phone, 99999, []), NotFoundError);
      h.discover([LAMP, PRINTER]);
      const printer = api.devices().find((d) => d.mac === PRINTER.mac);
      assert.ok(printer && !printer.paired);
      await refused(() => api.setGrant(phone, printer.id, []), ConflictError);
      assert.deepEqual(api.grants(), [{ phoneId: phone, deviceId: lamp.id, ports: [] }], 'the refused grants changed nothing');
    });

    void test('unpairing forgets the identity and every grant to the device; twice is a conflict', async () => {
      api.setGrant(phone, camera.id, []);
      await api.unpair(camera.id);
      const c = api.devices().find((d) => d.id === camera.id)!;
      assert.equal(c.paired, false);
      assert.equal(c.ntmId, null);
      assert.equal(c.virtualV4, null);
      assert.deepEqual(api.grants(), [{ phoneId: phone, deviceId: lamp.id, ports: [] }]);
      await refused(() => api.unpair(camera.id), ConflictError);
      await refused(() => api.unpair(99999), NotFoundError);
    });

    void test('removing a phone ends its grants; removing it again is not found', async () => {
      await api.removePhone(phone);
      assert.equal(api.phones().find((p) => p.id === phone), undefined);
      assert.deepEqual(api.grants(), []);
      await refused(() => api.removePhone(phone), NotFoundError);
      await refused(() => api.removePhone('nope'), InputError, 'phoneId');
    });

    void test('the event log: newest first, limited, and heard live as each change commits', () => {
      const all = api.events(100);
      const kinds = all.map((e) => e.kind);
      for (const k of ['device.discovered', 'device.paired', 'enrollment.created', 'phone.enrolled', 'access.granted', 'access.revoked', 'device.unpaired', 'phone.removed']) {
        assert.ok(kinds.includes(k), `${k} is logged`);
      }
      assert.ok(kinds.indexOf('phone.removed') < kinds.indexOf('device.paired'), 'newest first');
      assert.ok(all.every((e) => Number.isFinite(Date.parse(e.at)) && e.message.length > 0));
      assert.equal(api.events(2).length, 2);
      assert.deepEqual(api.events(2), all.slice(0, 2));
      const live = heard.map((e) => e.kind);
      for (const k of ['device.paired', 'phone.enrolled', 'access.granted', 'device.unpaired', 'phone.removed']) assert.ok(live.includes(k), `${k} was heard live`);
      let called = 0;
      const stop = api.onEvent(() => called++);
      stop();
      api.createEnrollment('Ben’s phone');
      assert.equal(called, 0, 'an unsubscribed listener is not called');
      assert.equal(heard.at(-1)?.kind, 'enrollment.created', 'a subscribed one is');
    });

    void test('health and tunnels: the shape the status page reads', () => {
      const s = api.health();
      assert.equal(s.agent.ok, true);
      assert.ok(s.agent.uptimeS >= 0 && s.agent.version.length > 0);
      assert.equal(s.dc.ok, true);
      assert.match(s.dc.id, ID);
      assert.ok(s.dc.terminals >= 1, 'the paired lamp is registered');
      assert.ok(s.dc.online <= s.dc.terminals);
      assert.equal(typeof s.rs.ok, 'boolean');
      assert.ok(Number.isInteger(s.rs.tunnels));
      assert.equal(typeof s.dataplane.ok, 'boolean');
      assert.ok(Object.values(s.dataplane.drops).every((v) => Number.isInteger(v)));
      assert.deepEqual(api.tunnels(), [], 'no phone is connected');
      const tr = api.traffic();
      assert.ok(tr.stepS > 0 && Number.isInteger(tr.points) && tr.points > 0, JSON.stringify(tr));
      assert.deepEqual(tr.connections, [], 'no connection has carried anything');
    });
  });
}
