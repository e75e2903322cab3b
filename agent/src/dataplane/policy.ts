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
    const e = this.devices.get(node);
    if (!e) return C.IN_NOT_PAIRED;
    if (!this.allowed(peer, node, info)) return C.IN_POLICY;
    const lan = info.version === 4 ? e.lan4 : e.lan6;
    // The phone asked for a family the appliance does not have on the LAN: the engine answers "unreachable".
    if (!lan) return C.IN_NO_LAN_ADDRESS;
    const r = rewriteAddress(buf, info, 'dst', lan);
    return r.ok ? C.PASS : IN_REWRITE[r.reason];
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
    return [...this.devices.keys()].flatMap((id) => this.lanSourcesOf(id));
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
