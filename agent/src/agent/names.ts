// The name a phone reaches a paired appliance by: `<label>.ntm`, answered by the phone's own DNS listener from the
// household DC's name table. Households name devices in words ("Living Room Lamp", "居間のランプ"), which are not DNS
// labels; the label is derived from the name the same way wherever it is needed (the runtime registers it, the
// store shows it), so it needs no column of its own and follows a rename of an unpaired device.
import { domainToASCII } from 'node:url';

/** DNS labels are at most 63 octets (RFC 1035 §2.3.4). */
const MAX_LABEL = 63;

/**
 * A device name as one DNS label: lower case, runs of anything but letters and digits become one "-", no leading or
 * trailing "-"; non-ASCII names become their IDNA A-label (RFC 5891, "xn--…"), which is what a phone's apps send for a
 * Unicode name. Null when nothing usable is left or the label would be too long.
 */
export function nameLabel(name: string): string | null {
  const words = name
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '');
  const label = words === '' ? '' : domainToASCII(words);
  return label !== '' && label.length <= MAX_LABEL && !label.includes('.') ? label : null;
}

/** The label a paired device registers under: its name's, else `device-` and the first 8 hex digits of its NTM ID. */
export function ntmLabel(name: string, ntmId: string): string {
  return nameLabel(name) ?? `device-${ntmId.replace(/^0x/, '').slice(0, 8).toLowerCase()}`;
}

/** The full name phones use: `<label>.ntm`. */
export function ntmHostName(name: string, ntmId: string): string {
  return `${ntmLabel(name, ntmId)}.ntm`;
}
