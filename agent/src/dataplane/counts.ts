// What the data path counts: a fixed enumeration of outcomes (tailscale's wgengine/filter answers from a fixed set of
// verdicts too), counted by index in a typed array, so no string is built or hashed per packet. The names are the
// stable vocabulary of `ntm status`, the web page's health view and the tests ('in-policy', 'out-not-paired', …).
import type { PacketFailureReason } from './packet/parse.js';
import type { OpenDrop } from '../crypto/session.js';
import type { OutboundResult } from '../types/tunnels.js';

// Every reason a parse, a rewrite or an ICMP build may give (a Record, so a new reason fails to compile until it is
// listed here and so gets a counter of its own).
const PACKET_REASONS = Object.keys({
  empty: 1, truncated: 1, 'bad-version': 1, 'bad-header-length': 1, 'bad-total-length': 1, jumbogram: 1, 'bad-extension-header': 1,
  'too-many-extension-headers': 1, 'truncated-l4': 1, 'bad-tcp-header': 1, 'bad-udp-length': 1, 'address-length': 1, 'routing-header': 1,
  'not-too-big': 1, 'not-df': 1, 'icmp-error': 1, 'non-first-fragment': 1, 'bad-address': 1, 'output-too-small': 1,
} satisfies Record<PacketFailureReason, 1>) as PacketFailureReason[];
const OPEN_DROPS = Object.keys({ length: 1, type: 1, reserved: 1, index: 1, expired: 1, counter: 1, replay: 1, auth: 1 } satisfies Record<OpenDrop, 1>) as OpenDrop[];
const RESULTS = Object.keys({ sent: 1, queued: 1, dropped: 1 } satisfies Record<OutboundResult, 1>) as OutboundResult[];

const names: string[] = [];
const at = (name: string): number => names.push(name) - 1;
const family = <R extends string>(prefix: string, reasons: readonly R[]): Readonly<Record<R, number>> =>
  Object.freeze(Object.fromEntries(reasons.map((r) => [r, at(prefix + r)])) as Record<R, number>);

/** Outcomes by index. PASS is no outcome: a policy's "go on". */
export const C = Object.freeze({
  PASS: at(''),
  // LAN → tunnel.
  OUT_TOO_BIG: at('out-too-big'),
  OUT_NOT_PAIRED: at('out-not-paired'),
  OUT_NOT_A_PHONE: at('out-not-a-phone'),
  OUT_POLICY: at('out-policy'),
  OUT_NO_NODE: at('out-no-node'),
  /** To a device another household shared: the LAN source is not one the household let use it (issue 13). */
  OUT_SHARE_NOT_USER: at('out-share-not-user'),
  /** To a shared device: a packet the translation cannot carry (a fragment, an ICMP error, no free port). */
  OUT_SHARE_UNTRANSLATABLE: at('out-share-untranslatable'),
  /** TCP GSO packets the tunnel's socket cut and sealed whole (issue 15); their segments count in out-sent. */
  OUT_GSO_WHOLE: at('out-gso-whole'),
  // Tunnel → LAN, at the socket (a terminal's `drops` in `ntm status`).
  DATA_RX: at('rx'),
  DATA_UNKNOWN_INDEX: at('data-unknown-index'),
  DATA_STALE_INDEX: at('data-stale-index'),
  DATA_INTERNAL: at('data-internal'),
  /** A tunnel refused a DATA packet for a reason this list does not know (cannot happen while OPEN_DROPS is whole). */
  DATA_INVALID: at('data-invalid'),
  NO_REGISTRATION: at('no-registration'),
  INNER_SOURCE: at('inner-source'),
  INNER_DESTINATION: at('inner-destination'),
  INNER_VERSION: at('inner-version'),
  INNER_NO_DATAPLANE: at('inner-no-dataplane'),
  // Tunnel → LAN, past the crypto.
  IN_NOT_PAIRED: at('in-not-paired'),
  IN_POLICY: at('in-policy'),
  IN_NO_LAN_ADDRESS: at('in-no-lan-address'),
  /** From a shared device: nothing of ours started this flow (no translation for it), or not from the shared device. */
  IN_SHARE_NO_FLOW: at('in-share-no-flow'),
  IN_DELIVERED: at('in-delivered'),
  IN_WRITE_FAILED: at('in-write-failed'),
  ICMP_UNREACHABLE_LIMITED: at('icmp-unreachable-limited'),
  ICMP_UNREACHABLE_NO_NODE: at('icmp-unreachable-no-node'),
  CARRIER_UNEXPECTED: at('carrier-unexpected'),
});
export const OUT_MALFORMED = family('out-malformed-', PACKET_REASONS);
export const OUT_REWRITE = family('out-rewrite-', PACKET_REASONS);
export const OUT_RESULT = family('out-', RESULTS);
export const DATA_OPEN = family('data-', OPEN_DROPS);
export const IN_MALFORMED = family('in-malformed-', PACKET_REASONS);
export const IN_REWRITE = family('in-rewrite-', PACKET_REASONS);
export const ICMP_UNREACHABLE = family('icmp-unreachable-', PACKET_REASONS);
export const ICMP_RESULT = family('icmp-unreachable-', RESULTS);

/** Every outcome's name, by index. */
export const COUNT_NAMES: readonly string[] = Object.freeze(names);

/** Outcomes that are not drops: what went through, and the ICMP answers sent. */
const PASSED = new Set([C.DATA_RX, C.OUT_GSO_WHOLE, OUT_RESULT.sent, OUT_RESULT.queued, C.IN_DELIVERED, ICMP_RESULT.sent, ICMP_RESULT.queued]);
/** Counted at the terminal's socket, before the inner packet is looked at (a terminal's `drops` beside the host's). */
const SOCKET = new Set([C.DATA_RX, C.DATA_UNKNOWN_INDEX, C.DATA_STALE_INDEX, C.DATA_INTERNAL, C.DATA_INVALID, ...Object.values(DATA_OPEN), C.NO_REGISTRATION, C.INNER_SOURCE, C.INNER_DESTINATION, C.INNER_VERSION]);

/** One counter per outcome. Single-threaded: the engine's JS thread increments, anyone reads. */
export class DataCounts {
  private readonly n = new Float64Array(COUNT_NAMES.length);

  inc(outcome: number, n = 1): void {
    this.n[outcome]! += n;
  }

  get(name: string): number {
    const i = COUNT_NAMES.indexOf(name);
    return i <= 0 ? 0 : this.n[i]!;
  }

  /** Non-zero counters by name (sorted), optionally only those `which` keeps. */
  toJSON(which: (outcome: number) => boolean = () => true): Record<string, number> {
    const out: [string, number][] = [];
    for (let i = 1; i < this.n.length; i++) if (this.n[i]! > 0 && which(i)) out.push([COUNT_NAMES[i]!, this.n[i]!]);
    return Object.fromEntries(out.sort(([a], [b]) => a.localeCompare(b)));
  }

  /** The drops only (what the health view shows). */
  drops(): Record<string, number> {
    return this.toJSON((i) => !PASSED.has(i));
  }

  /** What the socket saw of DATA: datagrams received and those dropped before their inner packet was read. */
  socket(): { rx: number; drops: Record<string, number> } {
    return { rx: this.n[C.DATA_RX]!, drops: this.toJSON((i) => SOCKET.has(i) && i !== C.DATA_RX) };
  }
}
