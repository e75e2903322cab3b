// The names phones reach paired appliances by (agent/src/agent/names.ts): a household's words as one DNS label, the
// store showing it, and two paired devices never sharing one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import { nameLabel, ntmHostName, ntmLabel } from '../../agent/src/agent/names.js';
import { ConflictError } from '../../agent/src/types/errors.js';

const ID = '0x' + 'ab12cd34'.repeat(5);

test('a device name becomes one DNS label', () => {
  assert.equal(ntmLabel('Living Room Lamp', ID), 'living-room-lamp');
  assert.equal(ntmLabel('lamp', ID), 'lamp');
  assert.equal(ntmLabel("  Anna's  TV (2) ", ID), 'anna-s-tv-2');
  assert.equal(ntmLabel('ＴＶ', ID), 'tv', 'full-width letters fold (NFKC)');
  // Non-ASCII names become IDNA A-labels: what a phone's apps ask DNS for when given the Unicode name.
  assert.equal(ntmLabel('Café', ID), 'xn--caf-dma');
  assert.match(ntmLabel('居間のランプ', ID), /^xn--[a-z0-9-]+$/);
  assert.equal(ntmHostName('Living Room Lamp', ID), 'living-room-lamp.ntm');
});

test('a name with nothing usable falls back to the NTM ID', () => {
  assert.equal(nameLabel('!!!'), null);
  assert.equal(ntmLabel('!!!', ID), 'device-ab12cd34');
  assert.equal(ntmLabel('', ID), 'device-ab12cd34');
  assert.ok(ntmLabel('x'.repeat(63), ID).length <= 63);
});

test('the store shows the name phones use, and refuses a second paired device with the same one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-names-'));
  const store = HouseholdStore.open(join(dir, 'agent.db'));
  try {
    const id = (n: number) => ({ privateKeyHex: n.toString(16).padStart(64, '0'), ntmId: '0x' + n.toString(16).padStart(40, '0'), virtualV4: `198.18.0.${n}`, virtualV6: `fd4e:544d::${n}` });
    const lamp = store.pair({ name: 'Living Room Lamp', ipv4: '192.168.1.10' }, id(1));
    assert.equal(lamp.ntmName, 'living-room-lamp.ntm');
    assert.throws(() => store.resolvePair({ name: 'living-room lamp!', ipv4: '192.168.1.11' }), ConflictError);
    // An unpaired device shows no name: phones cannot reach it.
    store.unpair(lamp.id);
    assert.equal(store.device(lamp.id).ntmName, null);
    assert.equal(store.resolvePair({ name: 'living-room lamp!', ipv4: '192.168.1.11' }).name, 'living-room lamp!');
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
