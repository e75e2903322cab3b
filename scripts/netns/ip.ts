// Address arithmetic the topology validator needs: parse IPv4/IPv6 addresses and prefixes, test subnet membership.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** An interface address with its prefix length, e.g. 192.0.2.2/26. */
export interface Cidr {
  readonly family: Family;
  /** The address as written, without the prefix length. */
  readonly address: string;
  readonly prefix: number;
  readonly value: bigint;
}

export function familyOf(address: string): Family | null {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  return null;
}

export function addressValue(address: string): bigint {
  const family = familyOf(address);
  if (family === 4) return address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  if (family !== 6) throw new Error(`not an IP address: ${address}`);
  let text = address;
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hextets so the rest is uniform.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const n = addressValue(v4[1]);
    text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const missing = 8 - headParts.length - tailParts.length;
  const parts = tail === undefined ? headParts : [...headParts, ...new Array<string>(missing).fill('0'), ...tailParts];
  return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

/** Parses "ADDRESS/LEN"; returns an explanation instead of throwing, for the validator's messages. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  if (slash < 0) return `"${text}" has no prefix length (write e.g. 192.0.2.2/26)`;
  const address = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  const family = familyOf(address);
  if (family === null) return `"${address}" is not an IPv4 or IPv6 address`;
  const max = family === 4 ? 32 : 128;
  const prefix = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || prefix > max) return `"/${lenText}" is not a prefix length for IPv${family}`;
  return { family, address, prefix, value: addressValue(address) };
}

/** True when `address` lies inside the subnet of `cidr`. */
export function inSubnet(cidr: Cidr, address: string): boolean {
  if (familyOf(address) !== cidr.family) return false;
  const bits = BigInt(cidr.family === 4 ? 32 : 128);
  const shift = bits - BigInt(cidr.prefix);
  return addressValue(address) >> shift === cidr.value >> shift;
}

/** "[v6]:port" or "v4:port", the form the probes print and accept. */
export function formatEndpoint(address: string, port: number): string {
  return familyOf(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}
