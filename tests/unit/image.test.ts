// The fast checks of the agent VM image (issue 14, part 1); the build and boot are scripts/image-test. A subscriber's
// NoCloud seed (`ntm provision --seed-iso`) read back with isoinfo, as a VM manager and the image's first boot see it;
// the image's systemd units checked by systemd's own `systemd-analyze verify` against a root laid out like the image's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, linkSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSection } from '../../agent/src/config/schema.js';
import { seedHostname } from '../../agent/src/cmd/seed-iso.js';
import { networkdPlan } from '../../agent/src/cmd/seed-network.js';
import { NTM, ROOT, tempDir } from '../lib/ntm.js';

function isoFile(iso: string, path: string): string {
  const r = spawnSync('isoinfo', ['-R', '-i', iso, '-x', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('provision --seed-iso: a NoCloud seed per subscriber carrying its bundle, which loads as its agent config', () => {
  const tmp = tempDir('ntm-seed-');
  try {
    const csv = join(tmp.path, 'subs.csv');
    writeFileSync(csv, 'id,household,wan_address,lan_mac,lan_address\nS-001,Tanaka home,198.51.100.2,52:54:00:AA:00:01,192.168.1.2/24\nS_002,Suzuki home,,,\n');
    const out = join(tmp.path, 'out');
    const r = spawnSync(process.execPath, [NTM, 'provision', '--subscribers', csv, '--out', out, '--seed-iso'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const [id, household, hostname] of [['S-001', 'Tanaka home', 'ntm-s-001'], ['S_002', 'Suzuki home', 'ntm-s-002']] as const) {
      const dir = join(out, id);
      const iso = join(dir, 'seed.iso');
      assert.equal(statSync(iso).mode & 0o077, 0, 'the seed holds the setup code: root only');
      const info = spawnSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' }).stdout;
      assert.match(info, /^Volume id: cidata$/m, 'cloud-init finds a NoCloud seed by this label');
      const meta = isoFile(iso, '/meta-data');
      assert.match(meta, new RegExp(`^instance-id: ntm-${id}$`, 'm'));
      assert.match(meta, new RegExp(`^local-hostname: ${hostname}$`, 'm'));
      assert.match(isoFile(iso, '/user-data'), /^#cloud-config\n/);
      const onSeed = isoFile(iso, '/ntm/agent.json');
      assert.equal(onSeed, readFileSync(join(dir, 'agent.json'), 'utf8'), 'the seed carries the bundle unchanged');
      assert.equal(isoFile(iso, '/ntm/setup-code'), readFileSync(join(dir, 'setup-code'), 'utf8'));
      assert.equal(isoFile(iso, '/ntm/dc.key'), readFileSync(join(dir, 'dc.key'), 'utf8'), "the agent's identity travels with it");
      const agent = loadSection('agent', JSON.parse(onSeed) as Record<string, unknown>);
      assert.equal(agent.household, household);
      assert.equal(agent.setupCodeFile, '/var/lib/ntm/agent/setup-code', 'first boot puts the code where the agent reads it');
    }
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'S-001', 'agent.json'), 'utf8')).agent.advertise, ['198.51.100.2']);
    // The LAN card: cloud-init's network-config (version 2) on the seed names it by its MAC address.
    const networkConfig = JSON.parse(isoFile(join(out, 'S-001', 'seed.iso'), '/network-config')) as Record<string, unknown>;
    assert.deepEqual(networkConfig, { version: 2, ethernets: { lan: { match: { macaddress: '52:54:00:aa:00:01' }, addresses: ['192.168.1.2/24'], dhcp4: false } } });
    const files = spawnSync('isoinfo', ['-R', '-f', '-i', join(out, 'S_002', 'seed.iso')], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(files, /network-config/, 'no LAN card known: no network-config (every card takes DHCP)');
    // Re-running rewrites the seeds from the kept codes.
    const code = readFileSync(join(out, 'S-001', 'setup-code'), 'utf8');
    assert.equal(spawnSync(process.execPath, [NTM, 'provision', '--subscribers', csv, '--out', out, '--seed-iso']).status, 0);
    assert.equal(isoFile(join(out, 'S-001', 'seed.iso'), '/ntm/setup-code'), code);
  } finally {
    tmp.remove();
  }
});

test("first boot turns the seed's network-config into networkd files and the agent's LAN interface", () => {
  const tmp = tempDir('ntm-seednet-');
  try {
    const root = tmp.path;
    const csv = join(root, 'subs.csv');
    writeFileSync(csv, 'id,household,lan_mac,lan_address\nS-1,Ito home,52-54-00-aa-00-02,\nS-2,Abe home,52:54:00:aa:00:03,10.1.2.3/16\n');
    const r = spawnSync(process.execPath, [NTM, 'provision', '--subscribers', csv, '--out', join(root, 'out'), '--seed-iso'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // The VM's cards as sysfs shows them: the WAN first, then the LAN with the seed's MAC.
    const sys = join(root, 'sys');
    for (const [name, mac] of [['lo', '00:00:00:00:00:00'], ['ens3', '52:54:00:aa:00:01'], ['ens4', '52:54:00:aa:00:02']] as const) {
      mkdirSync(join(sys, name), { recursive: true });
      writeFileSync(join(sys, name, 'address'), `${mac}\n`);
    }
    const nd = join(root, 'network');
    mkdirSync(nd);
    const agentJson = join(root, 'agent.json');
    cpSync(join(root, 'out/S-1/agent.json'), agentJson);
    const run = spawnSync(process.execPath, [join(ROOT, 'dist/agent/src/cmd/seed-network.js'), join(root, 'out/S-1/network-config'), agentJson, nd, sys], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /household LAN: ens4 \(52:54:00:aa:00:02\) DHCP/);
    const unit = readFileSync(join(nd, '10-ntm-lan.network'), 'utf8');
    assert.match(unit, /^MACAddress=52:54:00:aa:00:02$/m);
    assert.match(unit, /^DHCP=ipv4$/m);
    assert.match(unit, /^UseRoutes=no$/m, 'the default route stays the WAN\'s');
    const agent = loadSection('agent', JSON.parse(readFileSync(agentJson, 'utf8')) as Record<string, unknown>);
    assert.equal(agent.lanInterface, 'ens4', 'the agent takes the seed\'s LAN card');
    assert.equal(agent.household, 'Ito home');
    // A fixed address; a card the VM does not have; a config that is not ours.
    const fixed = networkdPlan(readFileSync(join(root, 'out/S-2/network-config'), 'utf8'), new Map([['52:54:00:aa:00:03', 'enp0s4']]));
    assert.equal(fixed.lanInterface, 'enp0s4');
    assert.match(fixed.files.get('10-ntm-lan.network')!, /^Address=10\.1\.2\.3\/16\nDHCP=no$/m);
    const missing = networkdPlan(readFileSync(join(root, 'out/S-2/network-config'), 'utf8'), new Map([['52:54:00:aa:00:09', 'ens3']]));
    assert.equal(missing.lanInterface, undefined);
    assert.match(missing.notes.join('\n'), /no card with MAC 52:54:00:aa:00:03/);
    assert.equal(networkdPlan('network:\n  version: 2\n', new Map()).files.size, 0);
    // Bad LAN columns are refused with their line; the good row is still provisioned.
    writeFileSync(csv, 'id,household,lan_mac,lan_address\nS-3,Ok home,52:54:00:aa:00:04,\nS-4,Bad home,01:00:5e:00:00:01,\nS-5,Bad home,52:54:00:aa:00:05,192.168.1.300/24\n');
    const bad = spawnSync(process.execPath, [NTM, 'provision', '--subscribers', csv, '--out', join(root, 'out'), '--seed-iso'], { encoding: 'utf8' });
    assert.equal(bad.status, 65);
    assert.match(bad.stderr, /line 3: bad LAN MAC address "01:00:5e:00:00:01"/);
    assert.match(bad.stderr, /line 4: bad LAN address "192\.168\.1\.300\/24"/);
    assert.ok(statSync(join(root, 'out/S-3/seed.iso')).isFile());
  } finally {
    tmp.remove();
  }
});

test('seed host names are RFC 1123 names made from the subscriber id', () => {
  assert.equal(seedHostname('S-001'), 'ntm-s-001');
  assert.equal(seedHostname('Acme_Home_7'), 'ntm-acme-home-7');
  assert.equal(seedHostname('x'.repeat(64)).length, 63);
  assert.match(seedHostname('ab_'), /^ntm-ab$/, 'no trailing hyphen');
});

test('the image units pass systemd-analyze verify in a root laid out like the image', () => {
  const tmp = tempDir('ntm-units-');
  try {
    const root = tmp.path;
    // The image's layout: the units in /etc/systemd/system, the agent in /opt/ntm, Node.js as /usr/bin/node, and
    // systemd's own units (the targets and services ours order against).
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    mkdirSync(join(root, 'opt/ntm/firmware'), { recursive: true });
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
    cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    for (const u of ['ntm-agent.service', 'ntm-first-boot.service']) cpSync(join(ROOT, 'firmware', u), join(root, 'etc/systemd/system', u));
    cpSync(join(ROOT, 'firmware/first-boot'), join(root, 'opt/ntm/firmware/first-boot'));
    linkSync(process.execPath, join(root, 'usr/bin/node'));
    const verify = (): { status: number | null; stderr: string } =>
      spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'ntm-agent.service', 'ntm-first-boot.service'], { encoding: 'utf8' });
    const r = verify();
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warning either');
    // The check sees a mistake: systemd-analyze only warns (status 0) about a bad value, so the test reads stderr.
    const unit = join(root, 'etc/systemd/system/ntm-first-boot.service');
    writeFileSync(unit, readFileSync(unit, 'utf8').replace('Type=oneshot', 'Type=one-shot'));
    assert.match(verify().stderr, /Failed to parse service type/);
  } finally {
    tmp.remove();
  }
});

test('the first-boot script is valid bash', () => {
  const r = spawnSync('bash', ['-n', join(ROOT, 'firmware/first-boot')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
