// An in-memory `Bind` on a fake network, for fast tests (wireguard-go's conn/bindtest is the model): binds opened on
// one FakeNetwork deliver to each other by endpoint, on a later event-loop turn as a socket would, in order. Bytes a
// receiver is lent are overwritten once its handler returns, so a receiver that keeps borrowed bytes fails its tests
// here rather than in production. Passes dataplane/conn/testing/compliance.ts beside the real UdpBind.
import type { Bind, Endpoint } from '../../types/net.js';

const POISON = 0xee;
const key = (address: string, port: number): string => `${address}|${port}`;

/** What a test may do to a datagram in flight: deliver it (true) or lose it (false). */
export type FakeFilter = (data: Uint8Array, from: Endpoint, to: Endpoint) => boolean;

export class FakeNetwork {
  private readonly binds = new Map<string, FakeBind>();
  private nextPort = 40_000;
  /** Datagrams delivered, lost by the filter, and sent to an endpoint nobody holds. */
  readonly counts = { delivered: 0, filtered: 0, unreachable: 0 };
  /** Set by a test to lose or watch datagrams; absent: every datagram to a bound endpoint arrives. */
  filter: FakeFilter | undefined;

  /**
   * A bind on `addresses` (its first is the source of what it sends to that family) at `port` (0: the next free one).
   * Throws RangeError if an address is taken at that port (as EADDRINUSE).
   */
  open(addresses: readonly string[] = ['10.0.0.1'], port = 0): FakeBind {
    if (addresses.length === 0) throw new RangeError('a fake bind needs an address');
    const p = port || this.freePort(addresses);
    for (const a of addresses) if (this.binds.has(key(a, p))) throw new RangeError(`fake address in use: ${a}:${p}`);
    const b = new FakeBind(this, addresses, p);
    for (const a of addresses) this.binds.set(key(a, p), b);
    return b;
  }

  private freePort(addresses: readonly string[]): number {
    for (;;) {
      const p = this.nextPort++;
      if (!addresses.some((a) => this.binds.has(key(a, p)))) return p;
    }
  }

  /** @internal */
  release(b: FakeBind): void {
    for (const a of b.addresses) if (this.binds.get(key(a, b.port)) === b) this.binds.delete(key(a, b.port));
  }

  /** @internal Schedules delivery of a copy of `data`, taken at delivery (the sender lent it until then). */
  transmit(data: Uint8Array, from: Endpoint, to: Endpoint): void {
    setImmediate(() => {
      const dst = this.binds.get(key(to.address, to.port));
      if (!dst) {
        this.counts.unreachable++;
        return;
      }
      if (this.filter && !this.filter(data, from, to)) {
        this.counts.filtered++;
        return;
      }
      this.counts.delivered++;
      dst.receive(Buffer.from(data), from);
    });
  }
}

export class FakeBind implements Bind {
  private handler: (data: Buffer, from: Endpoint) => void = () => {};
  private closed = false;

  /** @internal Use FakeNetwork.open. */
  constructor(
    private readonly net: FakeNetwork,
    readonly addresses: readonly string[],
    readonly port: number,
  ) {}

  /** This bind's endpoint in `family` (the first address of that family), for the peers that send to it. */
  endpoint(family: 4 | 6 = 4): Endpoint {
    const a = this.addresses.find((x) => (x.includes(':') ? 6 : 4) === family);
    if (!a) throw new RangeError(`fake bind has no IPv${family} address`);
    return { family, address: a, port: this.port };
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    const from = this.addresses.some((x) => (x.includes(':') ? 6 : 4) === to.family) ? this.endpoint(to.family) : undefined;
    // No address of that family: as a socket without a route, the datagram is lost.
    if (!from) return void this.net.counts.unreachable++;
    this.net.transmit(data, from, to);
  }

  onMessage(handler: (data: Buffer, from: Endpoint) => void): void {
    this.handler = handler;
  }

  /** @internal */
  receive(data: Buffer, from: Endpoint): void {
    if (this.closed) return;
    this.handler(data, from);
    data.fill(POISON);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.net.release(this);
  }
}
