// The household's devices: what LAN discovery finds (merged into one row per appliance), and the pairing of a device
// with the NTM identity the agent holds for it (paper §3.2.2, the RCA proxy). The private keys of paired devices are
// stored as hex (the agent must sign for them after a restart) and leave this module only through pairedIdentities().
import { isIPv4, isIPv6 } from 'node:net';
import type { DiscoveredDevice } from '../../discovery/types.js';
import { normaliseMac } from '../../discovery/neighbours.js';
import { canonicalIp } from '../../protocol/ip.js';
import { ConflictError, InputError, NotFoundError } from '../../types/errors.js';
import type { DeviceSource, DeviceView, PairInput } from '../../types/household.js';
import { nameLabel, ntmHostName } from '../names.js';
import { iso, Part } from './journal.js';
import { isUniqueViolation, LIMITS, validDeviceId, validIpv4, validIpv6, validKind, validMac, validName, validNtmId, validPrivateKeyHex } from './validate.js';

/** A paired device's identity as the runtime gets it: enough to sign, register and carry its traffic. */
export interface PairedIdentity {
  readonly deviceId: number;
  readonly name: string;
  readonly mac: string | null;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  readonly ntmId: string;
  readonly privateKeyHex: string;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
}

/** What the runtime created for a device it pairs: a fresh NTM identity, registered with the DC. */
export interface NewIdentity {
  readonly privateKeyHex: string;
  readonly ntmId: string;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
}

/** A validated pairing request: which row (null: a new, hand-described device) and what it will be called. */
export interface PairTarget {
  readonly deviceId: number | null;
  readonly name: string;
  readonly kind: string;
  readonly mac: string | null;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
}

export interface DiscoveryResult {
  readonly added: DeviceView[];
  readonly updated: number;
  readonly wentOffline: number;
}

export interface DeviceRow {
  id: number;
  name: string;
  name_by_user: number;
  kind: string;
  kind_by_user: number;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  host: string | null;
  sources: string;
  online: number;
  last_seen: number | null;
  created_at: number;
  paired: number;
  ntm_private_key: string | null;
  ntm_id: string | null;
  virtual_v4: string | null;
  virtual_v6: string | null;
  paired_at: number | null;
  unpaired_at: number | null;
}

export class DeviceStore extends Part {
  private deviceView(r: DeviceRow): DeviceView {
    const sources = r.sources.split(',').filter((s): s is DeviceSource => s === 'mdns' || s === 'neighbour' || s === 'manual');
    return {
      id: r.id,
      name: r.name,
      kind: r.kind,
      mac: r.mac,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      online: r.online === 1,
      sources,
      lastSeen: r.last_seen === null ? null : iso(r.last_seen),
      paired: r.paired === 1,
      ntmId: r.paired === 1 ? r.ntm_id : null,
      virtualV4: r.paired === 1 ? r.virtual_v4 : null,
      virtualV6: r.paired === 1 ? r.virtual_v6 : null,
      ntmName: r.paired === 1 && r.ntm_id !== null ? ntmHostName(r.name, r.ntm_id) : null,
    };
  }

  /** The row of device `id` (for the other parts); NotFoundError when there is none. */
  row(id: number): DeviceRow {
    const r = this.db.prepare('SELECT * FROM hh_devices WHERE id = ?').get(id) as DeviceRow | undefined;
    if (!r) throw new NotFoundError(`there is no device ${id}`);
    return r;
  }

  /** Paired devices first, then by name (unnamed last). */
  devices(): DeviceView[] {
    const rows = this.db.prepare("SELECT * FROM hh_devices ORDER BY paired DESC, name = '', name, id").all() as DeviceRow[];
    return rows.map((r) => this.deviceView(r));
  }

  device(id: number): DeviceView {
    return this.deviceView(this.row(validDeviceId(id)));
  }

  deviceByNtmId(ntmId: string): DeviceView | null {
    const r = this.db.prepare('SELECT * FROM hh_devices WHERE ntm_id = ? AND paired = 1').get(ntmId.toLowerCase()) as DeviceRow | undefined;
    return r ? this.deviceView(r) : null;
  }

  /** A name no other device has: the wanted one, else "name (2)", "name (3)", … (discovered names may repeat). */
  private freeDeviceName(wanted: string, selfId: number | null): string {
    if (wanted === '') return '';
    const taken = (n: string): boolean => {
      const r = this.db.prepare('SELECT id FROM hh_devices WHERE name = ?').get(n) as { id: number } | undefined;
      return r !== undefined && r.id !== selfId;
    };
    if (!taken(wanted)) return wanted;
    for (let i = 2; i < 1000; i++) {
      const base = [...wanted].slice(0, LIMITS.nameChars - 6).join('');
      const n = `${base} (${i})`;
      if (!taken(n)) return n;
    }
    return '';
  }

  /**
   * The row a discovered (or hand-described) device is. A MAC decides; without a MAC match, an address or mDNS
   * host identifies a row only if that row has no other MAC (a DHCP address may have passed to another device) —
   * unless `byAddress`: a person typing only an address means whatever device has it now.
   */
  private findDiscoveredRow(d: DiscoveredDevice, byAddress = false): DeviceRow | undefined {
    const q = (sql: string, v: string): DeviceRow | undefined => this.db.prepare(sql).get(v) as DeviceRow | undefined;
    if (d.mac) {
      const r = q('SELECT * FROM hh_devices WHERE mac = ?', d.mac);
      if (r) return r;
    }
    const free = (r: DeviceRow | undefined): DeviceRow | undefined =>
      r && (r.mac === null || r.mac === d.mac || (byAddress && d.mac === null)) ? r : undefined;
    if (d.host) {
      const r = free(q('SELECT * FROM hh_devices WHERE host = ? ORDER BY paired DESC', d.host));
      if (r) return r;
    }
    if (d.ipv4) {
      const r = free(q('SELECT * FROM hh_devices WHERE ipv4 = ? ORDER BY paired DESC', d.ipv4));
      if (r) return r;
    }
    if (d.ipv6) return free(q('SELECT * FROM hh_devices WHERE ipv6 = ? ORDER BY paired DESC', d.ipv6));
    return undefined;
  }

  /**
   * Takes a whole discovery snapshot (LanDiscovery.snapshot()): adds new devices, updates addresses, names and
   * online state of known ones, marks devices missing from it offline, and forgets unpaired devices unseen for
   * 30 days. One transaction. Names and kinds the household gave are kept.
   */
  applyDiscovery(found: readonly DiscoveredDevice[]): DiscoveryResult {
    const now = this.now();
    return this.tx(() => {
      const added: DeviceView[] = [];
      const seen = new Set<number>();
      let updated = 0;
      for (const d of found) {
        const mac = d.mac === null ? null : normaliseMac(d.mac);
        const ipv4 = d.ipv4 !== null && isIPv4(d.ipv4) ? d.ipv4 : null;
        const ipv6 = d.ipv6 !== null && isIPv6(d.ipv6) ? canonicalIp(d.ipv6.toLowerCase()) : null;
        if (mac === null && ipv4 === null && ipv6 === null) continue;
        let name = '';
        try {
          name = d.name === '' ? '' : validName(d.name);
        } catch {
          // An appliance's announced name is untrusted input; an unusable one is simply not shown.
        }
        let kind = '';
        try {
          kind = validKind(d.kind);
        } catch {
          // As for names.
        }
        const sources = [...new Set(d.sources.filter((s) => s === 'mdns' || s === 'neighbour'))];
        const lastSeen = d.online ? Math.max(d.lastSeen, 0) || now : null;
        const rec = { ...d, mac, ipv4, ipv6 };
        const r = this.findDiscoveredRow(rec);
        if (r === undefined) {
          const info = this.db
            .prepare(`INSERT INTO hh_devices (name, kind, mac, ipv4, ipv6, host, sources, online, last_seen, created_at)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(this.freeDeviceName(name, null), kind, mac, ipv4, ipv6, d.host, sources.join(','), d.online ? 1 : 0, lastSeen, now);
          const id = Number(info.lastInsertRowid);
          seen.add(id);
          const v = this.deviceView(this.row(id));
          added.push(v);
          this.event('device.discovered', `New device on the network: ${v.name || v.ipv4 || v.ipv6 || v.mac}`);
          continue;
        }
        if (seen.has(r.id)) continue;
        seen.add(r.id);
        // A device first known only by mDNS (no MAC) and now matched by MAC leaves a stale duplicate: drop it, before
        // this row is named, so the name the duplicate held is free (else the device would become "name (2)").
        if (mac !== null && d.host) {
          this.db.prepare("DELETE FROM hh_devices WHERE host = ? AND mac IS NULL AND paired = 0 AND id <> ? AND sources NOT LIKE '%manual%' AND id NOT IN (SELECT device_id FROM hh_remote_share_users)").run(d.host, r.id);
        }
        const keepManual = r.sources.split(',').includes('manual') ? ['manual'] : [];
        const next = {
          name: r.name_by_user === 1 || r.paired === 1 || name === '' ? r.name : this.freeDeviceName(name, r.id),
          kind: r.kind_by_user === 1 || kind === '' ? r.kind : kind,
          mac: r.mac ?? mac,
          ipv4: ipv4 ?? r.ipv4,
          ipv6: ipv6 ?? r.ipv6,
          host: d.host ?? r.host,
          sources: [...new Set([...keepManual, ...sources])].join(','),
          online: d.online ? 1 : 0,
          last_seen: lastSeen ?? r.last_seen,
        };
        const changed =
          next.name !== r.name || next.kind !== r.kind || next.mac !== r.mac || next.ipv4 !== r.ipv4 || next.ipv6 !== r.ipv6 ||
          next.host !== r.host || next.sources !== r.sources || next.online !== r.online;
        this.db
          .prepare('UPDATE hh_devices SET name = ?, kind = ?, mac = ?, ipv4 = ?, ipv6 = ?, host = ?, sources = ?, online = ?, last_seen = ? WHERE id = ?')
          .run(next.name, next.kind, next.mac, next.ipv4, next.ipv6, next.host, next.sources, next.online, next.last_seen, r.id);
        if (changed) updated++;
        if (r.paired === 1 && r.online !== next.online) this.event(next.online ? 'device.online' : 'device.offline', `${r.name} is ${next.online ? 'online' : 'offline'}`);
      }
      let wentOffline = 0;
      const online = this.db.prepare('SELECT id, name, paired FROM hh_devices WHERE online = 1').all() as { id: number; name: string; paired: number }[];
      for (const r of online) {
        if (seen.has(r.id)) continue;
        this.db.prepare('UPDATE hh_devices SET online = 0 WHERE id = ?').run(r.id);
        wentOffline++;
        if (r.paired === 1) this.event('device.offline', `${r.name} is offline`);
      }
      this.db.prepare('DELETE FROM hh_devices WHERE paired = 0 AND online = 0 AND COALESCE(last_seen, created_at) < ? AND id NOT IN (SELECT device_id FROM hh_remote_share_users)').run(now - LIMITS.forgetAfterMs);
      return { added, updated, wentOffline };
    });
  }

  /** The row a discovered device is stored as (after applyDiscovery took it), by the rules applyDiscovery uses. */
  idOfDiscovered(d: DiscoveredDevice): number | undefined {
    const mac = d.mac === null ? null : normaliseMac(d.mac);
    const ipv4 = d.ipv4 !== null && isIPv4(d.ipv4) ? d.ipv4 : null;
    const ipv6 = d.ipv6 !== null && isIPv6(d.ipv6) ? canonicalIp(d.ipv6.toLowerCase()) : null;
    if (mac === null && ipv4 === null && ipv6 === null) return undefined;
    return this.findDiscoveredRow({ ...d, mac, ipv4, ipv6 })?.id;
  }

  /**
   * Checks a pairing request without changing anything (the runtime calls it before creating an identity, so a
   * bad request costs no registration). Throws InputError / NotFoundError / ConflictError.
   */
  resolvePair(input: PairInput): PairTarget {
    if (typeof input !== 'object' || input === null) throw new InputError('a pairing request is an object', 'body');
    const name = input.name === undefined ? undefined : validName(input.name);
    const kind = input.kind === undefined ? undefined : validKind(input.kind);
    if (input.deviceId !== undefined) {
      const r = this.row(validDeviceId(input.deviceId));
      if (r.paired === 1) throw new ConflictError(`${r.name || 'this device'} is already paired`);
      const finalName = name ?? r.name;
      if (finalName === '') throw new InputError('this device has no name yet: give it one', 'name');
      this.checkNameFree(finalName, r.id);
      return { deviceId: r.id, name: finalName, kind: kind ?? r.kind, mac: r.mac, ipv4: r.ipv4, ipv6: r.ipv6 };
    }
    const mac = input.mac === undefined || input.mac === '' ? null : validMac(input.mac);
    const ipv4 = input.ipv4 === undefined || input.ipv4 === '' ? null : validIpv4(input.ipv4);
    const ipv6 = input.ipv6 === undefined || input.ipv6 === '' ? null : validIpv6(input.ipv6);
    if (name === undefined) throw new InputError('give the device a name', 'name');
    if (mac === null && ipv4 === null && ipv6 === null) throw new InputError('give the device\'s MAC address or IP address', 'ipv4');
    // A hand-described device that discovery already knows is that row, not a second one.
    const same = this.findDiscoveredRow({ name: '', kind: '', mac, ipv4, ipv6, host: null, online: false, sources: [], lastSeen: 0, services: [] }, true);
    if (same) {
      if (same.paired === 1) throw new ConflictError(`that address belongs to ${same.name}, which is already paired`);
      this.checkNameFree(name, same.id);
      return { deviceId: same.id, name, kind: kind ?? same.kind, mac: same.mac ?? mac, ipv4: ipv4 ?? same.ipv4, ipv6: ipv6 ?? same.ipv6 };
    }
    this.checkNameFree(name, null);
    return { deviceId: null, name, kind: kind ?? '', mac, ipv4, ipv6 };
  }

  private checkNameFree(name: string, selfId: number | null): void {
    const r = this.db.prepare('SELECT id FROM hh_devices WHERE name = ?').get(name) as { id: number } | undefined;
    if (r && r.id !== selfId) throw new ConflictError(`another device is already called "${name}"`);
    // Phones reach a paired device by its name as a DNS label: two paired names must not make the same one.
    const label = nameLabel(name);
    if (label === null) return;
    const paired = this.db.prepare('SELECT id, name FROM hh_devices WHERE paired = 1 AND id IS NOT ?').all(selfId) as { id: number; name: string }[];
    const other = paired.find((d) => nameLabel(d.name) === label);
    if (other) throw new ConflictError(`phones would reach "${name}" as ${label}.ntm, like ${other.name}; choose another name`);
  }

  /**
   * Records a pairing: the device (existing or new) with the identity the runtime created for it. Re-validates the
   * request inside the transaction (the state may have changed since resolvePair).
   */
  pair(input: PairInput, identity: NewIdentity): DeviceView {
    const privateKey = validPrivateKeyHex(identity.privateKeyHex);
    const ntmId = validNtmId(identity.ntmId, 'ntmId');
    const v4 = identity.virtualV4 === null ? null : validIpv4(identity.virtualV4, 'virtualV4');
    const v6 = identity.virtualV6 === null ? null : validIpv6(identity.virtualV6, 'virtualV6');
    const now = this.now();
    try {
      return this.tx(() => {
        const t = this.resolvePair(input);
        let id = t.deviceId;
        if (id === null) {
          const info = this.db
            .prepare("INSERT INTO hh_devices (name, mac, ipv4, ipv6, sources, created_at) VALUES ('', ?, ?, ?, 'manual', ?)")
            .run(t.mac, t.ipv4, t.ipv6, now);
          id = Number(info.lastInsertRowid);
        } else {
          this.db.prepare('UPDATE hh_devices SET mac = ?, ipv4 = ?, ipv6 = ? WHERE id = ?').run(t.mac, t.ipv4, t.ipv6, id);
        }
        this.db
          .prepare(`UPDATE hh_devices SET name = ?, name_by_user = name_by_user OR ?, kind = ?, kind_by_user = kind_by_user OR ?,
              paired = 1, ntm_private_key = ?, ntm_id = ?, virtual_v4 = ?, virtual_v6 = ?, paired_at = ?, unpaired_at = NULL WHERE id = ?`)
          .run(t.name, input.name !== undefined ? 1 : 0, t.kind, input.kind !== undefined ? 1 : 0, privateKey, ntmId, v4, v6, now, id);
        const v = this.deviceView(this.row(id));
        this.event('device.paired', `${v.name} is paired (${ntmId})`);
        return v;
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw new ConflictError('that NTM identity or virtual address is already in use');
      throw e;
    }
  }

  /** Unpairs: removes the device's grants and forgets its identity (the runtime revokes it first). Returns the old identity. */
  unpair(deviceId: number): { device: DeviceView; ntmId: string } {
    const id = validDeviceId(deviceId);
    return this.tx(() => {
      const r = this.row(id);
      if (r.paired !== 1 || r.ntm_id === null) throw new ConflictError(`${r.name || 'this device'} is not paired`);
      this.db.prepare('DELETE FROM hh_grants WHERE device_id = ?').run(id);
      this.db
        .prepare(`UPDATE hh_devices SET paired = 0, ntm_private_key = NULL, ntm_id = NULL, virtual_v4 = NULL, virtual_v6 = NULL,
            unpaired_at = ? WHERE id = ?`)
        .run(this.now(), id);
      this.event('device.unpaired', `${r.name} is no longer paired`);
      return { device: this.deviceView(this.row(id)), ntmId: r.ntm_id };
    });
  }

  /** Every paired device with its private key: what the runtime loads at start. */
  pairedIdentities(): PairedIdentity[] {
    const rows = this.db.prepare('SELECT * FROM hh_devices WHERE paired = 1 ORDER BY id').all() as DeviceRow[];
    return rows.map((r) => ({
      deviceId: r.id,
      name: r.name,
      mac: r.mac,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      ntmId: r.ntm_id!,
      privateKeyHex: r.ntm_private_key!,
      virtualV4: r.virtual_v4,
      virtualV6: r.virtual_v6,
    }));
  }
}
