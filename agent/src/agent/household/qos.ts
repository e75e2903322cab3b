// QoS rules (paper §3.2.1): per paired device and per phone, a scheduling class and optional rate limits, and the
// household's link rates (which the ISP's controller sets to the plan it sells). Stored so that a restarted agent puts
// the same rules back in the kernel. Enforcement is not here: the runtime turns these into a QosPlan.
import { InputError, NotFoundError } from '../../types/errors.js';
import type { QosClass, QosDeviceRule, QosLink, QosPhoneRule, QosRule } from '../../types/qos.js';
import type { DeviceStore } from './devices.js';
import { type Journal, Part } from './journal.js';
import type { PhoneStore } from './phones.js';
import { validDeviceId, validNtmId } from './validate.js';

const CLASSES: readonly QosClass[] = ['priority', 'normal', 'background'];
/** 10 Gbit/s: more than any access link a household is sold. */
const MAX_KBIT = 10_000_000;

function validKbit(v: unknown, field: string, allowZero: boolean): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 8) || v > MAX_KBIT) {
    throw new InputError(`${field} is a whole number of kbit/s from ${allowZero ? 0 : 8} to ${MAX_KBIT}`, field);
  }
  return v;
}

/** A rule as the API sends it: class required, limits optional (absent or null: none). */
export function validQosRule(v: unknown): QosRule {
  if (typeof v !== 'object' || v === null) throw new InputError('a QoS rule is an object', 'body');
  const r = v as Record<string, unknown>;
  if (!CLASSES.includes(r.class as QosClass)) throw new InputError(`class is one of ${CLASSES.join(', ')}`, 'class');
  const lim = (k: string): number | null => (r[k] === undefined || r[k] === null ? null : validKbit(r[k], k, false));
  return { class: r.class as QosClass, uplinkKbit: lim('uplinkKbit'), downlinkKbit: lim('downlinkKbit') };
}

export function validQosLink(v: unknown): QosLink {
  if (typeof v !== 'object' || v === null) throw new InputError('the link is an object', 'body');
  const r = v as Record<string, unknown>;
  return { uplinkKbit: validKbit(r.uplinkKbit, 'uplinkKbit', true), downlinkKbit: validKbit(r.downlinkKbit, 'downlinkKbit', true) };
}

interface Row {
  target: string;
  class: QosClass;
  up_kbit: number | null;
  down_kbit: number | null;
}

export class QosStore extends Part {
  constructor(
    journal: Journal,
    private readonly phones: PhoneStore,
    private readonly devices: DeviceStore,
  ) {
    super(journal);
  }

  link(): QosLink {
    const get = (k: string) => Number((this.db.prepare('SELECT value FROM hh_meta WHERE key = ?').get(k) as { value: string } | undefined)?.value ?? 0);
    return { uplinkKbit: get('qos_uplink_kbit'), downlinkKbit: get('qos_downlink_kbit') };
  }

  setLink(link: QosLink): QosLink {
    const l = validQosLink(link);
    this.tx(() => {
      const put = this.db.prepare('INSERT INTO hh_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
      put.run('qos_uplink_kbit', String(l.uplinkKbit));
      put.run('qos_downlink_kbit', String(l.downlinkKbit));
      this.event('qos.link', l.uplinkKbit || l.downlinkKbit ? `The link is shaped to ${l.uplinkKbit} kbit/s up, ${l.downlinkKbit} kbit/s down` : 'The link is no longer shaped');
    });
    return l;
  }

  /** Rules of paired devices and current phones (a rule outlives neither). */
  rules(): { devices: QosDeviceRule[]; phones: QosPhoneRule[] } {
    const rows = this.db.prepare('SELECT target, class, up_kbit, down_kbit FROM hh_qos ORDER BY target').all() as Row[];
    const paired = new Set(this.devices.devices().filter((d) => d.paired).map((d) => d.id));
    const phones = new Set(this.phones.phones().map((p) => p.id));
    const devices: QosDeviceRule[] = [];
    const out: QosPhoneRule[] = [];
    for (const r of rows) {
      const rule = { class: r.class, uplinkKbit: r.up_kbit, downlinkKbit: r.down_kbit };
      const [kind, id] = r.target.split(':', 2) as [string, string];
      if (kind === 'device' && paired.has(Number(id))) devices.push({ deviceId: Number(id), ...rule });
      else if (kind === 'phone' && phones.has(id)) out.push({ phoneId: id, ...rule });
    }
    return { devices, phones: out };
  }

  /** Sets (rule) or removes (null) a device's rule; the device must be paired. */
  setDeviceRule(deviceId: number, rule: QosRule | null): void {
    const id = validDeviceId(deviceId);
    const r = rule === null ? null : validQosRule(rule);
    this.tx(() => {
      const d = this.devices.row(id);
      if (d.paired !== 1) throw new NotFoundError(`${d.name || 'this device'} is not paired`);
      this.put(`device:${id}`, r, d.name);
    });
  }

  setPhoneRule(phoneId: string, rule: QosRule | null): void {
    const id = validNtmId(phoneId);
    const r = rule === null ? null : validQosRule(rule);
    this.tx(() => {
      const p = this.phones.phone(id);
      this.put(`phone:${id}`, r, `"${p.name}"`);
    });
  }

  private put(target: string, r: QosRule | null, who: string): void {
    if (r === null) {
      this.db.prepare('DELETE FROM hh_qos WHERE target = ?').run(target);
      this.event('qos.rule', `${who} has no QoS rule any more`);
      return;
    }
    this.db
      .prepare(`INSERT INTO hh_qos (target, class, up_kbit, down_kbit, updated_at) VALUES (?, ?, ?, ?, ?)
          ON CONFLICT(target) DO UPDATE SET class = excluded.class, up_kbit = excluded.up_kbit, down_kbit = excluded.down_kbit, updated_at = excluded.updated_at`)
      .run(target, r.class, r.uplinkKbit, r.downlinkKbit, this.now());
    const lim = [r.uplinkKbit ? `up to ${r.uplinkKbit} kbit/s up` : '', r.downlinkKbit ? `${r.downlinkKbit} kbit/s down` : ''].filter(Boolean).join(', ');
    this.event('qos.rule', `${who}: ${r.class}${lim ? ` (${lim})` : ''}`);
  }
}
