// What the household store accepts: one function per kind of value, each throwing InputError naming the field, with a
// message fit to show to the household; and the limits that keep every table small.
import { isIPv4, isIPv6 } from 'node:net';
import { normaliseMac } from '../../discovery/neighbours.js';
import { canonicalIp } from '../../protocol/ip.js';
import { InputError } from '../../types/errors.js';

export const LIMITS = {
  nameChars: 63,
  kindChars: 32,
  ports: 64,
  pendingEnrollments: 10,
  sessions: 20,
  /** An unpaired device not seen for this long is forgotten (ms). */
  forgetAfterMs: 30 * 86400_000,
} as const;

/** A display name: 1–63 characters after trimming, no control characters; NFC so look-alikes compare equal. */
export function validName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string') throw new InputError(`${field} must be text`, field);
  const s = v.normalize('NFC').trim().replace(/\s+/g, ' ');
  if (s === '') throw new InputError(`${field} must not be empty`, field);
  if ([...s].length > LIMITS.nameChars) throw new InputError(`${field} must be at most ${LIMITS.nameChars} characters`, field);
  if (/\p{Cc}|\p{Cf}/u.test(s)) throw new InputError(`${field} must not contain control characters`, field);
  return s;
}

/** A household name: a name that also fits the 63 bytes an enrollment token gives it. */
export function validHouseholdName(v: unknown, field = 'name'): string {
  const n = validName(v, field);
  if (Buffer.byteLength(n) > 63) throw new InputError(`${field} is too long (at most 63 bytes; fewer characters for non-Latin scripts)`, field);
  return n;
}

export function validKind(v: unknown, field = 'kind'): string {
  if (typeof v !== 'string') throw new InputError(`${field} must be text`, field);
  const s = v.trim().toLowerCase();
  if (s.length > LIMITS.kindChars || !/^[\p{L}\p{N} -]*$/u.test(s)) throw new InputError(`${field} must be up to ${LIMITS.kindChars} letters, digits, spaces or dashes`, field);
  return s;
}

export function validMac(v: unknown, field = 'mac'): string {
  const m = typeof v === 'string' ? normaliseMac(v) : null;
  if (m === null) throw new InputError(`${field} must be a MAC address like 02:00:00:aa:bb:cc`, field);
  return m;
}

export function validIpv4(v: unknown, field = 'ipv4'): string {
  if (typeof v !== 'string' || !isIPv4(v.trim())) throw new InputError(`${field} must be an IPv4 address like 192.168.1.20`, field);
  return v.trim();
}

export function validIpv6(v: unknown, field = 'ipv6'): string {
  if (typeof v !== 'string' || !isIPv6(v.trim()) || v.includes('%')) throw new InputError(`${field} must be an IPv6 address like fd00::20`, field);
  return canonicalIp(v.trim().toLowerCase());
}

export function validNtmId(v: unknown, field = 'phoneId'): string {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(v)) throw new InputError(`${field} must be an NTM ID (0x and 40 hex digits)`, field);
  return v.toLowerCase();
}

export function validDeviceId(v: unknown, field = 'deviceId'): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new InputError(`${field} must be a positive whole number`, field);
  return v;
}

/** Ports as a sorted set; an empty list means every port. */
export function validPorts(v: unknown, field = 'ports'): number[] {
  if (!Array.isArray(v)) throw new InputError(`${field} must be a list of port numbers`, field);
  if (v.length > LIMITS.ports) throw new InputError(`${field}: at most ${LIMITS.ports} ports (an empty list allows all)`, field);
  const set = new Set<number>();
  for (const p of v as unknown[]) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw new InputError(`${field}: ${String(p)} is not a port number (1–65535)`, field);
    set.add(p);
  }
  return [...set].sort((a, b) => a - b);
}

export function validPrivateKeyHex(v: unknown): string {
  if (typeof v !== 'string' || !/^(0x)?[0-9a-fA-F]{64}$/.test(v)) throw new InputError('privateKeyHex must be 64 hex digits', 'privateKeyHex');
  return v.replace(/^0x/, '').toLowerCase();
}

/** A UNIQUE or CHECK constraint refused the write (SQLite's own guard behind the checks above). */
export function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && String((e as { code?: unknown }).code).startsWith('SQLITE_CONSTRAINT');
}
