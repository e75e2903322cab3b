// Access grants: which phone may reach which paired device, on which ports (nothing is reachable until granted).
import { ConflictError, NotFoundError } from '../../types/errors.js';
import type { GrantView } from '../../types/household.js';
import type { DeviceStore } from './devices.js';
import { type Journal, Part } from './journal.js';
import type { PhoneStore } from './phones.js';
import { validDeviceId, validNtmId, validPorts } from './validate.js';

export interface AccessRule {
  readonly phoneId: string;
  readonly deviceId: number;
  readonly deviceNtmId: string;
  /** Empty: every port. */
  readonly ports: readonly number[];
}

export class GrantStore extends Part {
  constructor(
    journal: Journal,
    private readonly phones: PhoneStore,
    private readonly devices: DeviceStore,
  ) {
    super(journal);
  }

  grants(): GrantView[] {
    const rows = this.db
      .prepare(`SELECT g.phone_id, g.device_id, g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id
          JOIN hh_devices d ON d.id = g.device_id WHERE p.removed_at IS NULL AND d.paired = 1 ORDER BY p.name, d.name`)
      .all() as { phone_id: string; device_id: number; ports: string }[];
    return rows.map((r) => ({ phoneId: r.phone_id, deviceId: r.device_id, ports: JSON.parse(r.ports) as number[] }));
  }

  /** Lets a phone reach a paired device on `ports` (empty: all), replacing an earlier grant for the pair. */
  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): GrantView {
    const pid = validNtmId(phoneId);
    const did = validDeviceId(deviceId);
    const list = validPorts(ports);
    return this.tx(() => {
      const p = this.phones.phone(pid);
      const d = this.devices.row(did);
      if (d.paired !== 1) throw new ConflictError(`${d.name || 'this device'} is not paired; pair it first`);
      this.db
        .prepare(`INSERT INTO hh_grants (phone_id, device_id, ports, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT(phone_id, device_id) DO UPDATE SET ports = excluded.ports, updated_at = excluded.updated_at`)
        .run(pid, did, JSON.stringify(list), this.now());
      const what = list.length === 0 ? 'all ports' : `port${list.length > 1 ? 's' : ''} ${list.join(', ')}`;
      this.event('access.granted', `"${p.name}" may reach ${d.name} (${what})`);
      return { phoneId: pid, deviceId: did, ports: list };
    });
  }

  revokeGrant(phoneId: string, deviceId: number): void {
    const pid = validNtmId(phoneId);
    const did = validDeviceId(deviceId);
    this.tx(() => {
      const p = this.phones.phone(pid);
      const d = this.devices.row(did);
      const r = this.db.prepare('DELETE FROM hh_grants WHERE phone_id = ? AND device_id = ?').run(pid, did);
      if (r.changes === 0) throw new NotFoundError(`"${p.name}" has no access to ${d.name || 'this device'}`);
      this.event('access.revoked', `"${p.name}" may no longer reach ${d.name}`);
    });
  }

  /** The data path's question for a new flow: may this phone reach this paired device's port? */
  grantAllows(phoneId: string, deviceNtmId: string, port: number): boolean {
    const r = this.db
      .prepare(`SELECT g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id JOIN hh_devices d ON d.id = g.device_id
          WHERE g.phone_id = ? AND d.ntm_id = ? AND d.paired = 1 AND p.removed_at IS NULL`)
      .get(phoneId.toLowerCase(), deviceNtmId.toLowerCase()) as { ports: string } | undefined;
    if (!r) return false;
    const ports = JSON.parse(r.ports) as number[];
    return ports.length === 0 || ports.includes(port);
  }

  /** Every grant with the device's NTM ID: for a runtime that keeps the access table in memory. */
  accessRules(): AccessRule[] {
    const rows = this.db
      .prepare(`SELECT g.phone_id, g.device_id, d.ntm_id, g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id
          JOIN hh_devices d ON d.id = g.device_id WHERE p.removed_at IS NULL AND d.paired = 1`)
      .all() as { phone_id: string; device_id: number; ntm_id: string; ports: string }[];
    return rows.map((r) => ({ phoneId: r.phone_id, deviceId: r.device_id, deviceNtmId: r.ntm_id, ports: JSON.parse(r.ports) as number[] }));
  }
}
