// The invitation one household gives another to share a device (issue 13; paper §3.2.2, last paragraph). Pure.
//
// Text form: "ntm-share1:" LABEL "/" TOKEN, where LABEL is the shared device's name as a DNS label (its NAME.ntm at
// the sharing household) and TOKEN is an enrollment token (enrollment.ts: the sharing household's DC key and
// addresses, a one-time secret, the household's name, a check). Link form: "ntm://share#" + the text form. The
// accepting household's agent registers an identity of its own at that DC with the secret, exactly as a phone
// enrolls (docs/protocol.md §3.2); the enrollment the secret belongs to names the device and ports it is granted.
import { decodeEnrollment, type EnrollmentToken } from './enrollment.js';

export const SHARE_PREFIX = 'ntm-share1:';
export const SHARE_LINK_PREFIX = 'ntm://share#';

export interface ShareInvite {
  /** The shared device's label at the sharing household ("camera"). */
  readonly device: string;
  readonly token: EnrollmentToken;
}

export function encodeShareInvite(device: string, tokenText: string): string {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(device)) throw new RangeError(`"${device}" is not a DNS label`);
  return `${SHARE_PREFIX}${device}/${tokenText}`;
}

export function shareLink(text: string): string {
  return SHARE_LINK_PREFIX + text;
}

/** Decodes an invitation (code or link) as pasted; never throws. `now` checks the token's expiry (null: skip). */
export function decodeShareInvite(input: unknown, opts: { now?: number | null } = {}): { ok: true; invite: ShareInvite } | { ok: false; message: string } {
  if (typeof input !== 'string' || input.trim() === '') return { ok: false, message: 'no invitation code given' };
  let text = input.replace(/\s+/g, '');
  if (text.toLowerCase().startsWith(SHARE_LINK_PREFIX)) text = text.slice(SHARE_LINK_PREFIX.length);
  if (!text.toLowerCase().startsWith(SHARE_PREFIX)) return { ok: false, message: `an invitation code starts with "${SHARE_PREFIX}" (or a link with "${SHARE_LINK_PREFIX}")` };
  const rest = text.slice(SHARE_PREFIX.length);
  const slash = rest.indexOf('/');
  const device = slash < 0 ? '' : rest.slice(0, slash).toLowerCase();
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(device)) return { ok: false, message: 'the invitation code is damaged (no device name in it)' };
  const t = decodeEnrollment(rest.slice(slash + 1), opts);
  if (!t.ok) return { ok: false, message: t.message.replace(/token/g, 'invitation') };
  return { ok: true, invite: { device, token: t.token } };
}
