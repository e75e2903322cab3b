// Devices shared between two households (issue 13, part 1; paper §3.2.2, last paragraph: two agents let two non-NTM
// devices talk). The sharing side needs no table of its own: the other household is a peer of kind 'household' in
// hh_phones with the grant its invitation named (phones.ts). This part keeps the accepting side: what it accepted —
// the sharing household's DC, the identity this agent registers there for the share, the shared device's virtual
// addresses — and which of this household's devices may use it.
import { ConflictError, NotFoundError } from '../../types/errors.js';
import { type Journal, Part, iso } from './journal.js';
import type { DeviceStore } from './devices.js';
import { validDeviceId, validPrivateKeyHex } from './validate.js';

/** An accepted share as stored (the private key is the identity the agent registers at the sharing household's DC). */
export interface RemoteShareRecord {
  readonly id: number;
  readonly household: string;
  readonly device: string;
  readonly dcPublicKey: string;
  readonly dcEndpoints: readonly string[];
  readonly secret: Buffer;
  readonly privateKeyHex: string;
  readonly ntmId: string;
  readonly deviceV4: string | null;
  readonly deviceV6: string | null;
  readonly acceptedAt: string;
  /** Devices of this household that may use it. */
  readonly users: readonly number[];
}

interface Row {
  id: number;
  household: string;
  device: string;
  dc_public_key: string;
  dc_endpoints: string;
  secret: Buffer;
  ntm_private_key: string;
  ntm_id: string;
  device_v4: string | null;
  device_v6: string | null;
  accepted_at: number;
}

export interface NewRemoteShare {
  readonly household: string;
  readonly device: string;
  readonly dcPublicKey: string;
  readonly dcEndpoints: readonly string[];
  readonly secret: Uint8Array;
  readonly privateKeyHex: string;
  readonly ntmId: string;
  readonly users: readonly number[];
}

export class RemoteShareStore extends Part {
  constructor(
    journal: Journal,
    private readonly devices: DeviceStore,
  ) {
    super(journal);
  }

  private view(r: Row): RemoteShareRecord {
    const users = (this.db.prepare('SELECT device_id FROM hh_remote_share_users WHERE share_id = ? ORDER BY device_id').all(r.id) as { device_id: number }[]).map((u) => u.device_id);
    return {
      id: r.id,
      household: r.household,
      device: r.device,
      dcPublicKey: r.dc_public_key,
      dcEndpoints: JSON.parse(r.dc_endpoints) as string[],
      secret: r.secret,
      privateKeyHex: r.ntm_private_key,
      ntmId: r.ntm_id,
      deviceV4: r.device_v4,
      deviceV6: r.device_v6,
      acceptedAt: iso(r.accepted_at),
      users,
    };
  }

  list(): RemoteShareRecord[] {
    return (this.db.prepare('SELECT * FROM hh_remote_shares ORDER BY household, device').all() as Row[]).map((r) => this.view(r));
  }

  get(id: number): RemoteShareRecord {
    const r = this.db.prepare('SELECT * FROM hh_remote_shares WHERE id = ?').get(validDeviceId(id, 'shareId')) as Row | undefined;
    if (!r) throw new NotFoundError(`there is no accepted share ${id}`);
    return this.view(r);
  }

  /** Devices that may use a share: known to this household (any device of the store, paired or not). */
  private checkUsers(users: readonly number[]): number[] {
    const ids = [...new Set(users.map((u) => validDeviceId(u, 'devices')))].sort((a, b) => a - b);
    for (const id of ids) this.devices.device(id);
    return ids;
  }

  add(s: NewRemoteShare): RemoteShareRecord {
    const users = this.checkUsers(s.users);
    return this.tx(() => {
      if (this.db.prepare('SELECT 1 FROM hh_remote_shares WHERE household = ? AND device = ?').get(s.household, s.device))
        throw new ConflictError(`${s.device} of "${s.household}" is already shared with this home`);
      const info = this.db
        .prepare(`INSERT INTO hh_remote_shares (household, device, dc_public_key, dc_endpoints, secret, ntm_private_key, ntm_id, accepted_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(s.household, s.device, s.dcPublicKey, JSON.stringify(s.dcEndpoints), Buffer.from(s.secret), validPrivateKeyHex(s.privateKeyHex), s.ntmId, this.now());
      const id = Number(info.lastInsertRowid);
      this.putUsers(id, users);
      this.event('share.joined', `${s.device} of the household "${s.household}" was accepted (${users.length} device${users.length === 1 ? '' : 's'} may use it)`);
      return this.get(id);
    });
  }

  private putUsers(id: number, users: readonly number[]): void {
    this.db.prepare('DELETE FROM hh_remote_share_users WHERE share_id = ?').run(id);
    const ins = this.db.prepare('INSERT INTO hh_remote_share_users (share_id, device_id) VALUES (?, ?)');
    for (const u of users) ins.run(id, u);
  }

  setUsers(id: number, users: readonly number[]): RemoteShareRecord {
    const ids = this.checkUsers(users);
    return this.tx(() => {
      const s = this.get(id);
      this.putUsers(s.id, ids);
      this.event('share.users', `${ids.length} device${ids.length === 1 ? '' : 's'} may use ${s.device} of "${s.household}"`);
      return this.get(id);
    });
  }

  /** The shared device's virtual addresses, as the sharing household's DC resolved them. */
  setDeviceAddresses(id: number, v4: string, v6: string): void {
    this.db.prepare('UPDATE hh_remote_shares SET device_v4 = ?, device_v6 = ? WHERE id = ?').run(v4, v6, id);
  }

  remove(id: number): RemoteShareRecord {
    return this.tx(() => {
      const s = this.get(id);
      this.db.prepare('DELETE FROM hh_remote_shares WHERE id = ?').run(s.id);
      this.event('share.left', `${s.device} of "${s.household}" is no longer used by this home`);
      return s;
    });
  }
}
