// The DC's virtual address pools (paper §2.2: the DC hands out virtual addresses): a /24 of 198.18.0.0/15 and a /48 of
// fd4e:544d::/32 picked from the DC's ID, unless the configuration names them.
import type { SectionConfig } from '../config/schema.js';
import { parseCidr } from '../protocol/ip.js';

export function defaultPools(cfg: SectionConfig<'dc'>, id: Uint8Array): { v4: string; v6: string } {
  const r4 = parseCidr(cfg.virtualV4);
  const r6 = parseCidr(cfg.virtualV6);
  let v4 = cfg.poolV4;
  if (!v4) {
    const slots = 2 ** Math.max(0, 24 - r4.length);
    const slot = ((id[0]! << 8) | id[1]!) % slots;
    const n = r4.network;
    const base = ((n[0]! << 24) | (n[1]! << 16) | (n[2]! << 8)) >>> 0;
    const a = (base + slot * 256) >>> 0;
    v4 = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.0/24`;
  }
  let v6 = cfg.poolV6;
  if (!v6) {
    const n = Buffer.from(r6.network);
    // The /48 below the range's /32: 16 bits from the ID.
    n[4] = id[2]!;
    n[5] = id[3]!;
    v6 = parseCidr(`${[0, 2, 4, 6, 8, 10, 12, 14].map((i) => n.readUInt16BE(i).toString(16)).join(':')}/48`).text;
  }
  return { v4, v6 };
}
