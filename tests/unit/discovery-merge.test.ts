// LAN discovery's pure parts: parsing `ip -j neigh`, telling what kind of appliance a device is, and merging
// mDNS services with neighbour entries into one record per appliance.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { kindOf, mergeDiscovery, normaliseMac, parseNeighbours, readNeighbours, type ResolvedService } from '../../agent/src/discovery/index.js';
import { DiscoveryCommandError } from '../../agent/src/discovery/errors.js';

const NOW = 1_700_000_000_000;

/** As `ip -j neigh show dev br0` prints it (iproute2 6.1, Debian 12). */
const NEIGH = JSON.stringify([
  { dst: '192.168.1.10', lladdr: '02:00:00:00:00:10', state: ['REACHABLE'] },
  { dst: 'fe80::10', lladdr: '02:00:00:00:00:10', router: null, state: ['STALE'] },
  { dst: 'fd6e:746d:1::10', lladdr: '02:00:00:00:00:10', state: ['DELAY'] },
  { dst: '192.168.1.11', lladdr: '02:00:00:00:00:11', state: ['STALE'] },
  { dst: '192.168.1.12', lladdr: '02:00:00:00:00:12', state: ['FAILED'] },
  { dst: '192.168.1.13', state: ['INCOMPLETE'] },
  { dst: '192.168.1.14', lladdr: '02:00:00:00:00:14', state: ['PROBE'] },
  { dst: '224.0.0.251', lladdr: '01:00:5e:00:00:fb', state: ['NOARP'] },
  { dst: 'not an ip', lladdr: '02:00:00:00:00:99', state: ['REACHABLE'] },
  'garbage',
]);

function svc(over: Partial<ResolvedService>): ResolvedService {
  return { type: '_http._tcp', name: 'Living Room Lamp', host: 'lamp-1.local', port: 80, txt: {}, addresses: ['192.168.1.10'], seenAt: NOW - 1000, ...over };
}

describe('discovery', () => {
  test('neighbour table: MACs, families, online states; junk skipped', () => {
    const n = parseNeighbours(NEIGH);
    assert.deepEqual(
      n.map((e) => [e.ip, e.family, e.mac, e.online]),
      [
        ['192.168.1.10', 4, '02:00:00:00:00:10', true],
        ['fe80::10', 6, '02:00:00:00:00:10', true],
        ['fd6e:746d:1::10', 6, '02:00:00:00:00:10', true],
        ['192.168.1.11', 4, '02:00:00:00:00:11', true],
        ['192.168.1.12', 4, '02:00:00:00:00:12', false],
        ['192.168.1.14', 4, '02:00:00:00:00:14', false],
      ],
    );
    assert.deepEqual(parseNeighbours('not json'), []);
    assert.deepEqual(parseNeighbours('{}'), []);
    assert.equal(normaliseMac('02-00-00-AA-BB-CC'), '02:00:00:aa:bb:cc');
    assert.equal(normaliseMac('01:00:5e:00:00:fb'), null, 'multicast');
    assert.equal(normaliseMac('ff:ff:ff:ff:ff:ff'), null, 'broadcast');
    assert.equal(normaliseMac('00:00:00:00:00:00'), null);
    assert.equal(normaliseMac('02:00:00:00:00'), null);
  });

  test('reading the table of a missing interface is a typed error', async () => {
    await assert.rejects(readNeighbours('ntm-no-such-if0'), DiscoveryCommandError);
    assert.ok(Array.isArray(await readNeighbours('lo')));
  });

  test('kind: HAP category, specific service types, then the name', () => {
    assert.equal(kindOf([svc({ type: '_hap._tcp', txt: { ci: '5' } })], 'Thing'), 'lamp');
    assert.equal(kindOf([svc({ type: '_hap._tcp', txt: { ci: '17' } })], 'Thing'), 'camera');
    assert.equal(kindOf([svc({ type: '_hap._tcp', txt: {} })], 'Kitchen plug'), 'plug', 'the name beats a generic type');
    assert.equal(kindOf([svc({ type: '_hap._tcp', txt: {} })], 'Thing'), 'smart device');
    assert.equal(kindOf([svc({ type: '_ipp._tcp' })], 'Lamp-shaped printer'), 'printer', 'a specific type beats the name');
    assert.equal(kindOf([svc({ type: '_rtsp._tcp' })], 'Garden'), 'camera');
    assert.equal(kindOf([svc({ type: '_googlecast._tcp' })], 'Living room'), 'media player');
    assert.equal(kindOf([svc({ type: '_http._tcp' })], 'Living Room Lamp'), 'lamp');
    assert.equal(kindOf([svc({ type: '_http._tcp' })], 'Front Door Camera'), 'camera');
    assert.equal(kindOf([svc({ type: '_http._tcp' })], 'Lampoon server'), '', 'whole words only');
    assert.equal(kindOf([], ''), '');
  });

  test('merge: services joined to neighbour entries by address; one device per MAC', () => {
    const devices = mergeDiscovery(
      parseNeighbours(NEIGH),
      [
        svc({}),
        svc({ type: '_hap._tcp', port: 51826, txt: { ci: '5', md: 'Lamp 2' } }),
        svc({ type: '_googlecast._tcp', name: 'Chromecast-abc123', host: 'cc-1.local', port: 8009, txt: { fn: 'Living room TV' }, addresses: ['192.168.1.30', 'fd6e:746d:1::30'] }),
      ],
      NOW,
    );
    const names = devices.map((d) => d.name);
    assert.deepEqual(names, ['Living Room Lamp', 'Living room TV', '', '', '']);
    const lamp = devices[0]!;
    assert.equal(lamp.mac, '02:00:00:00:00:10');
    assert.equal(lamp.ipv4, '192.168.1.10');
    assert.equal(lamp.ipv6, 'fd6e:746d:1::10', 'a routable address beats link-local');
    assert.equal(lamp.host, 'lamp-1.local');
    assert.equal(lamp.kind, 'lamp');
    assert.deepEqual(lamp.sources, ['mdns', 'neighbour']);
    assert.deepEqual(lamp.services.map((s) => [s.type, s.port]), [['_hap._tcp', 51826], ['_http._tcp', 80]]);
    assert.equal(lamp.online, true);
    assert.equal(lamp.lastSeen, NOW);
    const tv = devices[1]!;
    assert.equal(tv.mac, null, 'not in the neighbour table yet');
    assert.equal(tv.kind, 'media player');
    assert.deepEqual(tv.sources, ['mdns']);
    assert.equal(tv.online, true);
    const failed = devices.find((d) => d.mac === '02:00:00:00:00:12')!;
    assert.equal(failed.online, false);
    assert.deepEqual(failed.sources, ['neighbour']);
  });

  test('merge: a service whose host did not resolve yet is still a device (online, by mDNS only)', () => {
    const [d] = mergeDiscovery([], [svc({ addresses: [] })], NOW);
    assert.equal(d!.name, 'Living Room Lamp');
    assert.equal(d!.ipv4, null);
    assert.equal(d!.online, true);
  });
});
