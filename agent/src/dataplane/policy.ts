// The packet policy the engine applies between parse and lookup, as one immutable value (tailscale's wgengine takes a
// whole config in Reconfig(), never edits). A terminal passes everything through: its packets already come from its
// virtual address. The household agent (paper §3.2.2: it encrypts on behalf of appliances that cannot) builds a
// HouseholdPolicy from a snapshot of its paired appliances, phones and grants, and hands the engine a new one whenever
// any of them changes: address translation LAN ↔ virtual, who may reach what on which ports, and which destinations
// get an ICMP "unreachable" instead of silence.
import { PROTO_ICMP, PROTO_ICMPV6, type PacketInfo } from './packet/parse.js';
import { rewriteAddress } from './packet/rewrite.js';
import { C, IN_REWRITE, OUT_REWRITE } from './counts.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from '../protocol/ip.js';
import { be32 } from '../util/bytes.js';
import type { ShareNat } from './share-nat.js';

/** Per packet: C.PASS to go on, or the outcome (a drop) to count. Never throws. */
export interface PacketPolicy {
  /** LAN → tunnel, before the tunnel lookup: may rewrite the packet's source in place. */
  outbound(buf: Buffer, info: PacketInfo): number;
  /**
   * Tunnel → LAN, for a packet `peer` sent to our identity `node`: may rewrite the destination in place.
   * C.IN_NO_LAN_ADDRESS asks the engine to answer the sender with an ICMP "unreachable".
   */
  inbound(buf: Buffer, info: PacketInfo, node: string, peer: string): number;
}

/** A terminal's policy (`ntm up`): its packets are its own, to and from its own virtual addresses. */
export const PASS_THROUGH: PacketPolicy = Object.freeze({ outbound: () => C.PASS, inbound: () => C.PASS });

/** What the agent's policy is built from: every field as the store and the DC know it. */
export interface PolicySnapshot {
  /** Paired appliances: their NTM identity, LAN addresses (null: none known) and virtual addresses. */
  readonly devices: readonly { readonly ntmId: string; readonly lan4: string | null; readonly lan6: string | null; readonly v4: string; readonly v6: string }[];
  /** The household's phones; virtual addresses once they registered with the DC. */
  readonly phones: readonly { readonly id: string; readonly v4?: string; readonly v6?: string }[];
  /** Grants: phone → appliance, on these ports (empty: all). */
  readonly grants: readonly { readonly phoneId: string; readonly deviceNtmId: string; readonly ports: readonly number[] }[];
  /**
   * Devices other households shared with this one (issue 13): the identity this agent holds at the sharing
   * household's DC (`node`) and its virtual addresses there, the shared device's virtual addresses, the LAN addresses
   * of this household's devices that may use it, and the translation table of its flows.
   */
  readonly shares?: readonly SharedDevice[];
}

export interface SharedDevice {
  readonly node: string;
  readonly v4: string;
  readonly v6: string;
  readonly deviceV4: string;
  readonly deviceV6: string;
  readonly users: readonly string[];
  readonly nat: ShareNat;
}

interface Share {
  readonly node: string;
  readonly v4: Buffer;
  readonly v6: Buffer;
  readonly deviceV4: number;
  readonly deviceV6: string;
  readonly users: ReadonlySet<string>;
  readonly nat: ShareNat;
}

interface Device {
  readonly ntmId: string;
  readonly lan4: Buffer | undefined;
  readonly lan6: Buffer | undefined;
  readonly v4: Buffer;
  readonly v6: Buffer;
}

/** The household agent's policy: immutable once built; a change builds a new one. */
export class HouseholdPolicy implements PacketPolicy {
  private readonly devices = new Map<string, Device>();
  private readonly byLan4 = new Map<number, Device>();
  private readonly byLan6 = new Map<string, Device>();
  private readonly phoneBy4 = new Map<number, string>();
  private readonly phoneBy6 = new Map<string, string>();
  private readonly phones = new Set<string>();
  /** phone ID → appliance NTM ID → allowed ports (empty: all). */
  private readonly access = new Map<string, Map<string, readonly number[]>>();
  /** Shared devices by their virtual address (IPv4 as a number, IPv6 as hex), and by the identity we hold for them. */
  private readonly shareBy4 = new Map<number, Share>();
  private readonly shareBy6 = new Map<string, Share>();
  private readonly shareByNode = new Map<string, Share>();
  private readonly shareUsers: string[] = [];

  constructor(s: PolicySnapshot) {
    for (const d of s.devices) {
      const e: Device = {
        ntmId: d.ntmId,
        lan4: d.lan4 ? Buffer.from(ip4ToBytes(d.lan4)) : undefined,
        // A link-local address (all the neighbour table may know of an appliance's IPv6) names no interface here, so
        // packets rewritten to it could not be delivered: such a device is reached over IPv4 only.
        lan6: d.lan6 && !/^fe[89ab]/i.test(d.lan6) ? Buffer.from(ip6ToBytes(d.lan6)) : undefined,
        v4: Buffer.from(ip4ToBytes(d.v4)),
        v6: Buffer.from(ip6ToBytes(d.v6)),
      };
      this.devices.set(d.ntmId, e);
      if (e.lan4) this.byLan4.set(be32(e.lan4, 0), e);
      if (e.lan6) this.byLan6.set(e.lan6.toString('hex'), e);
    }
    for (const p of s.phones) {
      this.phones.add(p.id);
      if (p.v4) this.phoneBy4.set(be32(ip4ToBytes(p.v4), 0), p.id);
      if (p.v6) this.phoneBy6.set(Buffer.from(ip6ToBytes(p.v6)).toString('hex'), p.id);
    }
    for (const sh of s.shares ?? []) {
      // Users by LAN address as the packet carries it (IPv4 as 8 hex digits, IPv6 as 32).
      const users = new Set(sh.users.map((a) => Buffer.from(a.includes(':') ? ip6ToBytes(a) : ip4ToBytes(a)).toString('hex')));
      const e: Share = {
        node: sh.node,
        v4: Buffer.from(ip4ToBytes(sh.v4)),
        v6: Buffer.from(ip6ToBytes(sh.v6)),
        deviceV4: be32(ip4ToBytes(sh.deviceV4), 0),
        deviceV6: Buffer.from(ip6ToBytes(sh.deviceV6)).toString('hex'),
        users,
        nat: sh.nat,
      };
      this.shareBy4.set(e.deviceV4, e);
      this.shareBy6.set(e.deviceV6, e);
      this.shareByNode.set(e.node, e);
      for (const a of sh.users) this.shareUsers.push(`${a}/${a.includes(':') ? 128 : 32}`);
    }
    for (const g of s.grants) {
      let m = this.access.get(g.phoneId);
      if (!m) this.access.set(g.phoneId, (m = new Map()));
      m.set(g.deviceNtmId, g.ports);
      this.phones.add(g.phoneId);
    }
  }

  /** LAN → tunnel: the appliance's LAN source becomes its virtual address, if a granted phone is the destination. */
  outbound(buf: Buffer, info: PacketInfo): number {
    const s = info.start;
    if (this.shareByNode.size > 0) {
      const sh = info.version === 4 ? this.shareBy4.get(be32(buf, s + 16)) : this.shareBy6.get(buf.toString('hex', s + 24, s + 40));
      if (sh) return this.toShare(buf, info, sh);
    }
    const e = info.version === 4 ? this.byLan4.get(be32(buf, s + 12)) : this.byLan6.get(buf.toString('hex', s + 8, s + 24));
    if (!e) return C.OUT_NOT_PAIRED;
    const phone = info.version === 4 ? this.phoneBy4.get(be32(buf, s + 16)) : this.phoneBy6.get(buf.toString('hex', s + 24, s + 40));
    if (!phone) return C.OUT_NOT_A_PHONE;
    // Replies come from the granted service port; the appliance may also start flows to a granted phone.
    if (!this.allowed(phone, e.ntmId, info)) return C.OUT_POLICY;
    const r = rewriteAddress(buf, info, 'src', info.version === 4 ? e.v4 : e.v6);
    return r.ok ? C.PASS : OUT_REWRITE[r.reason];
  }

  /** Tunnel → LAN: the grant, then the appliance's virtual destination becomes its LAN address. */
  inbound(buf: Buffer, info: PacketInfo, node: string, peer: string): number {
    const sh = this.shareByNode.get(node);
    if (sh) return this.fromShare(buf, info, sh);
    const e = this.devices.get(node);
    if (!e) return C.IN_NOT_PAIRED;
    if (!this.allowed(peer, node, info)) return C.IN_POLICY;
    const lan = info.version === 4 ? e.lan4 : e.lan6;
    // The phone asked for a family the appliance does not have on the LAN: the engine answers "unreachable".
    if (!lan) return C.IN_NO_LAN_ADDRESS;
    const r = rewriteAddress(buf, info, 'dst', lan);
    return r.ok ? C.PASS : IN_REWRITE[r.reason];
  }

  /**
   * LAN → a device another household shared: only from a device this household let use it; the source becomes the
   * share's virtual address and a port of its own (share-nat.ts). The sharing household's agent applies its own grant.
   */
  private toShare(buf: Buffer, info: PacketInfo, sh: Share): number {
    const s = info.start;
    const src = info.version === 4 ? buf.toString('hex', s + 12, s + 16) : buf.toString('hex', s + 8, s + 24);
    if (!sh.users.has(src)) return C.OUT_SHARE_NOT_USER;
    return sh.nat.outbound(buf, info, info.version === 4 ? sh.v4 : sh.v6) ? C.PASS : C.OUT_SHARE_UNTRANSLATABLE;
  }

  /** Tunnel → LAN for a share's identity: only replies of flows our devices started, from the shared device itself. */
  private fromShare(buf: Buffer, info: PacketInfo, sh: Share): number {
    const s = info.start;
    const fromDevice = info.version === 4 ? be32(buf, s + 12) === sh.deviceV4 : buf.toString('hex', s + 8, s + 24) === sh.deviceV6;
    if (!fromDevice) return C.IN_SHARE_NO_FLOW;
    // A user no longer allowed has no flows left (the runtime forgets them), so this also enforces a changed choice.
    return sh.nat.inbound(buf, info) ? C.PASS : C.IN_SHARE_NO_FLOW;
  }

  /** Whether `phone` may exchange this packet with `device`: a grant, and its source or destination port in it. */
  private allowed(phone: string, device: string, info: PacketInfo): boolean {
    const ports = this.access.get(phone)?.get(device);
    if (!ports) return false;
    if (ports.length === 0) return true;
    // ICMP has no ports: echo and errors follow the grant itself.
    if (info.protocol === PROTO_ICMP || info.protocol === PROTO_ICMPV6) return true;
    return ports.includes(info.srcPort) || ports.includes(info.dstPort);
  }

  /**
   * Whether the DC may direct `from` to `to` (paper §2.3): a grant between them either way; two of the family's
   * phones may reach each other; appliances only whom they were granted to.
   */
  allowsDirection(from: string, to: string): boolean {
    if (this.access.get(from)?.has(to) || this.access.get(to)?.has(from)) return true;
    return !this.devices.has(from) && !this.devices.has(to) && this.phones.has(from) && this.phones.has(to);
  }

  /** Whether a phone of the household has registered at these virtual addresses. */
  knowsPhoneAt(id: string, v4: string): boolean {
    return this.phoneBy4.get(be32(ip4ToBytes(v4), 0)) === id;
  }

  /** The appliances' LAN addresses as CIDRs: the firewall queues only their packets to virtual ranges. */
  lanSources(): string[] {
    return [...new Set([...[...this.devices.keys()].flatMap((id) => this.lanSourcesOf(id)), ...this.shareUsers])];
  }

  /** One appliance's LAN addresses as CIDRs (none when it is not paired). */
  lanSourcesOf(ntmId: string): string[] {
    const e = this.devices.get(ntmId);
    const out: string[] = [];
    if (e?.lan4) out.push(`${bytesToIp4(e.lan4)}/32`);
    if (e?.lan6) out.push(`${bytesToIp6(e.lan6)}/128`);
    return out;
  }
}
