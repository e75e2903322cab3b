// The DC's virtual address pools (paper §2.2: the DC hands out virtual addresses): a slice of 198.18.0.0/15 (a /16 for
// an ISP's open DC, a /24 for a household's: dc.poolV4Length) and a /48 of fd4e:544d::/32 picked from the DC's ID,
// unless the configuration names them. A terminal's IPv6 address has the index of its IPv4 one, so the IPv6 pool must
// hold at least as many addresses.
import type { SectionConfig } from '../config/schema.js';
import { ConfigError } from '../types/errors.js';
import { parseCidr } from '../protocol/ip.js';

export function defaultPools(cfg: SectionConfig<'dc'>, id: Uint8Array): { v4: string; v6: string } {
  const r4 = parseCidr(cfg.virtualV4);
  const r6 = parseCidr(cfg.virtualV6);
  let v4 = cfg.poolV4;
  if (!v4) {
    const len = Math.max(cfg.poolV4Length, r4.length);
    const slots = 2 ** (len - r4.length);
    const slot = ((id[0]! << 8) | id[1]!) % slots;
    const n = r4.network;
    const base = ((n[0]! << 24) | (n[1]! << 16) | (n[2]! << 8) | n[3]!) >>> 0;
    const a = (base + slot * 2 ** (32 - len)) >>> 0;
    v4 = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}/${len}`;
  }
  let v6 = cfg.poolV6;
  if (!v6) {
    const n = Buffer.from(r6.network);
    // The /48 below the range's /32: 16 bits from the ID.
    n[4] = id[2]!;
    n[5] = id[3]!;
    v6 = parseCidr(`${[0, 2, 4, 6, 8, 10, 12, 14].map((i) => n.readUInt16BE(i).toString(16)).join(':')}/48`).text;
  }
  if (128 - parseCidr(v6).length < 32 - parseCidr(v4).length) throw new ConfigError('dc.poolV6', `${v6} holds fewer addresses than ${v4}: each terminal gets one of each`);
  return { v4, v6 };
}

/** How many terminals a pool serves: its addresses less the network, the one kept for a gateway (.1) and broadcast. */
export function poolCapacity(v4Length: number): number {
  return Math.max(0, 2 ** (32 - v4Length) - 3);
}
