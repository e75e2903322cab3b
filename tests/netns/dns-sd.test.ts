// Issue 13, part 4: discovery for the phones that may see it. On the household testbed the lamp and the camera
// announce their web pages over mDNS; the agent (with Avahi on the vCPE's LAN bridge) discovers them, and a phone
// browsing DNS-SD under the household's domain through its own `ntm up` resolver (`dig`, as an app's DNS-SD browser
// would ask) sees exactly the services of the appliances it has been granted, on granted ports, and nothing else.
// Real processes: ntm agent, ntm up, Avahi, two mDNS announcers, dig.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { up, type Testbed } from '../../scripts/netns/index.js';
import { startAvahi, type AvahiHandle } from '../../scripts/netns/avahi.js';
import { ROOT, NTM, startNtm, tempDir, waitFor, type Daemon } from '../lib/ntm.js';

const LAMP = join(ROOT, 'dist/scripts/appliances/lamp.js');

interface DeviceJson {
  id: number;
  name: string;
  mac: string | null;
  paired: boolean;
  virtualV4: string;
}

void describe('DNS-SD for the phones that may see it (issue 13, part 4)', () => {
  let tb: Testbed;
  let tmp: { path: string; remove(): void };
  let avahi: AvahiHandle | undefined;
  let agent: Daemon;
  let phone: Daemon;
  let phoneId = '';
  let domain = '';
  let lamp: DeviceJson;
  let camera: DeviceJson;

  /** `dig +short` from the phone, through the resolver its resolv.conf names (ntm up's): one line per record. */
  const dig = async (type: string, name: string): Promise<string[]> => {
    const r = await tb.exec('phone', ['dig', '+short', '+time=3', '+tries=1', type, name]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    return r.stdout.trim().split('\n').filter((l) => l !== '');
  };
  /** The rcode dig reports ("NOERROR", "NXDOMAIN", …). */
  const status = async (type: string, name: string): Promise<string> => {
    const r = await tb.exec('phone', ['dig', '+time=3', '+tries=1', type, name]);
    return /status: (\w+)/.exec(r.stdout)?.[1] ?? `no answer: ${r.stdout}${r.stderr}`;
  };

  before(async () => {
    tb = await up('household', {});
    tmp = tempDir();
    process.on('exit', () => avahi?.stop());
    // Two appliances announcing a web page over mDNS: the lamp (port 80) and the camera's admin page (port 8081).
    tb.spawn('lamp', [process.execPath, LAMP, '--port', '80', '--mdns', '--host', 'lamp-1'], { stdio: 'ignore', env: { ...process.env, LAMP_ADDR: '192.168.1.10' } });
    tb.spawn('camera', [process.execPath, LAMP, '--port', '8081', '--mdns', '--host', 'camera-1', '--name', 'Front Door Camera', '--kind', 'camera'], {
      stdio: 'ignore',
      env: { ...process.env, LAMP_ADDR: '192.168.1.11' },
    });
    avahi = await startAvahi(tb.ns('vcpe'), 'br0');
    agent = await startNtm(tb, 'vcpe', 'agent', ['--no-web'], join(tmp.path, 'agent'), 30_000, avahi.env as Record<string, string>);
    // Discovery finds both by mDNS (and their MACs in the neighbour table); the household pairs them.
    const found = await waitFor(
      'both appliances discovered',
      async () => {
        const ds = (await agent.call({ cmd: 'devices' })) as DeviceJson[];
        const l = ds.find((d) => d.name === 'Living Room Lamp' && d.mac);
        const c = ds.find((d) => d.name === 'Front Door Camera' && d.mac);
        return l && c ? { l, c } : undefined;
      },
      30_000,
      500,
    );
    lamp = (await agent.call({ cmd: 'pair', deviceId: found.l.id, name: 'lamp' })) as DeviceJson;
    camera = (await agent.call({ cmd: 'pair', deviceId: found.c.id, name: 'camera' })) as DeviceJson;
    const enr = (await agent.call({ cmd: 'enroll', name: 'Phone' })) as { link: string };
    const phoneDir = join(tmp.path, 'phone');
    const en = await tb.exec('phone', [process.execPath, NTM, 'enroll', '--data-dir', phoneDir, '--name', 'phone', enr.link]);
    assert.equal(en.code, 0, en.stderr);
    phoneId = (JSON.parse(en.stdout.trim()) as { id: string }).id;
    tb.setResolver('phone', '127.0.0.1');
    phone = await startNtm(tb, 'phone', 'up', ['--dns', '127.0.0.1:53'], phoneDir);
    domain = ((await agent.status()) as { dnsSd: { domain: string } }).dnsSd.domain;
    // The agent holds the services once discovery has matched them to the (now paired) devices.
    await waitFor('services known', async () => (((await agent.status()) as { dnsSd: { devicesWithServices: number } }).dnsSd.devicesWithServices >= 2 ? true : undefined), 20_000, 500);
  });

  after(async () => {
    await phone?.stop();
    await agent?.stop();
    avahi?.stop();
    await tb?.down();
    tmp?.remove();
  });

  test('the household has a browse domain, and the phone finds it (RFC 6763 §11)', async () => {
    assert.equal(domain, 'home.ntm', 'the household "Home" browses as home.ntm');
    assert.deepEqual(await dig('PTR', 'b._dns-sd._udp.ntm'), [`${domain}.`]);
  });

  test('nothing granted: the phone sees no service, and names of ungranted instances do not exist for it', async () => {
    assert.deepEqual(await dig('PTR', `_http._tcp.${domain}`), []);
    assert.equal(await status('PTR', `_http._tcp.${domain}`), 'NOERROR');
    assert.equal(await status('SRV', `Living Room Lamp._http._tcp.${domain}`), 'NXDOMAIN');
    assert.deepEqual(await dig('PTR', `_services._dns-sd._udp.${domain}`), []);
  });

  test('the lamp granted: browsing _http._tcp lists the lamp only, with its port, TXT and virtual address', async () => {
    await agent.call({ cmd: 'grant', phoneId, deviceId: lamp.id });
    assert.deepEqual(await dig('PTR', `_http._tcp.${domain}`), [`Living\\032Room\\032Lamp._http._tcp.${domain}.`]);
    assert.deepEqual(await dig('SRV', `Living Room Lamp._http._tcp.${domain}`), ['0 0 80 lamp.ntm.']);
    // One TXT record holding both keys (their order carries no meaning, RFC 6763 §6.4).
    const txt = await dig('TXT', `Living Room Lamp._http._tcp.${domain}`);
    assert.equal(txt.length, 1, txt.join('\n'));
    assert.deepEqual(txt[0]!.split(' ').sort(), ['"kind=lamp"', '"path=/"']);
    assert.equal(await status('SRV', `Front Door Camera._http._tcp.${domain}`), 'NXDOMAIN', 'the ungranted camera stays invisible');
    assert.deepEqual(await dig('A', 'lamp.ntm'), [lamp.virtualV4], "the SRV target resolves to the lamp's virtual address");
    // What a DNS-SD client does next: connect to the target and port it was given.
    const r = await tb.exec('phone', ['curl', '-sS', '--max-time', '20', 'http://lamp.ntm:80/']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Living Room Lamp/);
    // The full answer carries SRV, TXT and the addresses as additional records (RFC 6763 §12.1).
    const full = await tb.exec('phone', ['dig', '+time=3', '+tries=1', 'PTR', `_http._tcp.${domain}`]);
    assert.match(full.stdout, /ADDITIONAL: 4/, full.stdout);
    assert.match(full.stdout, new RegExp(`lamp\\.ntm\\.\\s+\\d+\\s+IN\\s+A\\s+${lamp.virtualV4.replace(/\./g, '\\.')}`));
    console.log(`# dig PTR _http._tcp.${domain} from the phone, lamp granted:\n${full.stdout.split('\n').filter((l) => /^[^;]/.test(l) && l.trim()).map((l) => `#   ${l}`).join('\n')}`);
  });

  test('a grant on other ports hides a service on a port it does not cover; all ports show it', async () => {
    await agent.call({ cmd: 'grant', phoneId, deviceId: camera.id, ports: '554' });
    assert.deepEqual(await dig('PTR', `_http._tcp.${domain}`), [`Living\\032Room\\032Lamp._http._tcp.${domain}.`]);
    await agent.call({ cmd: 'grant', phoneId, deviceId: camera.id });
    assert.deepEqual((await dig('PTR', `_http._tcp.${domain}`)).sort(), [`Front\\032Door\\032Camera._http._tcp.${domain}.`, `Living\\032Room\\032Lamp._http._tcp.${domain}.`]);
    assert.deepEqual(await dig('SRV', `Front Door Camera._http._tcp.${domain}`), ['0 0 8081 camera.ntm.']);
    assert.deepEqual(await dig('PTR', `_services._dns-sd._udp.${domain}`), [`_http._tcp.${domain}.`]);
  });

  test('the lamp revoked: it is gone from the next browse, and its instance no longer resolves', async () => {
    await agent.call({ cmd: 'revoke', phoneId, deviceId: lamp.id });
    assert.deepEqual(await dig('PTR', `_http._tcp.${domain}`), [`Front\\032Door\\032Camera._http._tcp.${domain}.`]);
    assert.equal(await status('SRV', `Living Room Lamp._http._tcp.${domain}`), 'NXDOMAIN');
    const counts = ((await phone.status()) as { dns: Record<string, number> }).dns;
    assert.ok((counts['dns-sd'] ?? 0) >= 10, JSON.stringify(counts));
    assert.equal(counts['dns-sd-failed'] ?? 0, 0);
  });
});
