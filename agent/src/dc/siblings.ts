// The DC's worker processes (dc.workers > 1, issue 15) and what one asks of the others. The workers share the DC's
// ports (SO_REUSEPORT: the kernel picks a worker by the datagram's 4-tuple) and its ledger (dc.db), but a terminal's
// control channel lives in the one worker that registered it: its keys and counters never leave that process (two
// senders under one key would reuse nonces). So a Direction Request whose target another worker serves is answered by
// that worker, as a peer DC answers one (paper §2.3, PEER_INFO_REQUEST: it plans the route, directs its own terminal
// and returns the requester's half), and a NAT probe (docs/protocol.md §3.2), which comes to the probe port and so
// often to another worker than its registration, is told to all of them.
//
// The messages go through the supervisor (cmd/dc-workers.ts) over Node's IPC channel, the peer frames in their wire
// encoding (protocol/peer.ts), unsealed: the channel is a pipe between processes of one DC.
import { decodePeer, encodePeer, Peer, type PeerMessage } from '../protocol/peer.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import type { Endpoint } from '../types/net.js';
import type { PeerInfoRequest } from './federation.js';

export type PeerInfoResponse = Extract<PeerMessage, { type: typeof Peer.PEER_INFO_RESPONSE }>;

/** How long a worker waits for the others' answers to a direction (ms): a worker that is gone does not answer. */
export const SIBLING_TIMEOUT_MS = 1000;

/** The other workers of this DC, as one worker sees them. */
export interface Siblings {
  /** This worker's number (0 … count − 1) and how many there are. */
  readonly index: number;
  readonly count: number;
  /** Asks every other worker for a route to `m.target`: the first OK answer, else a refusal, else undefined (none). */
  peerInfo(m: PeerInfoRequest): Promise<PeerInfoResponse | undefined>;
  /** Tells the others the mapping this worker's probe port saw for probe `txid` of terminal `id`. */
  probeSeen(txid: bigint, id: Uint8Array, mapping: Endpoint): void;
  /** Set by the DC: another worker asks for a route to one of this worker's terminals. */
  onPeerInfo: (m: PeerInfoRequest, answer: (r: PeerInfoResponse) => void) => void;
  /** Set by the DC: another worker's probe port saw a probe. */
  onProbe: (txid: bigint, id: Uint8Array, mapping: Endpoint) => void;
  close(): void;
}

/** IPC messages between a worker and the supervisor (`to`/`from`: a worker's index). */
export type SiblingMessage =
  | { readonly ntmDc: 'ask'; readonly from: number; readonly seq: number; readonly frame: string }
  | { readonly ntmDc: 'answer'; readonly to: number; readonly seq: number; readonly frame: string }
  /** The probes one turn saw, each [txid, id (hex), mapping ("addr:port")]: one message a turn, not one a probe. */
  | { readonly ntmDc: 'probes'; readonly from: number; readonly probes: ReadonlyArray<readonly [string, string, string]> };

export function isSiblingMessage(m: unknown): m is SiblingMessage {
  return typeof m === 'object' && m !== null && ['ask', 'answer', 'probes'].includes((m as { ntmDc?: string }).ntmDc ?? '');
}

interface Asking {
  readonly answers: PeerInfoResponse[];
  readonly done: (r: PeerInfoResponse | undefined) => void;
  readonly timer: NodeJS.Timeout;
}

/** The best of the answers: a route, else a refusal other than NOT_FOUND, else undefined. */
function best(answers: readonly PeerInfoResponse[], notFound: number): PeerInfoResponse | undefined {
  return answers.find((a) => a.route) ?? answers.find((a) => a.status !== notFound);
}

/**
 * A worker's side over `port` (the process's own IPC channel: process.send / process.on('message')). `notFound` is the
 * status that means "not mine" (protocol/control.ts Status.NOT_FOUND).
 */
export class IpcSiblings implements Siblings {
  private seq = 0;
  private readonly asking = new Map<number, Asking>();
  onPeerInfo: Siblings['onPeerInfo'] = (_m, answer) => answer({ type: Peer.PEER_INFO_RESPONSE, txid: _m.txid, time: Date.now(), status: this.notFound, message: 'unknown peer' });
  onProbe: Siblings['onProbe'] = () => {};
  private readonly listener = (m: unknown): void => this.receive(m);
  /** Probes seen this turn, sent together at its end. */
  private probes: Array<readonly [string, string, string]> = [];
  private readonly sendProbes = (): void => {
    const probes = this.probes;
    this.probes = [];
    this.port.send({ ntmDc: 'probes', from: this.index, probes });
  };

  constructor(
    readonly index: number,
    readonly count: number,
    private readonly notFound: number,
    private readonly port: { send(m: SiblingMessage): unknown; on(e: 'message', f: (m: unknown) => void): unknown; off(e: 'message', f: (m: unknown) => void): unknown },
  ) {
    port.on('message', this.listener);
  }

  peerInfo(m: PeerInfoRequest): Promise<PeerInfoResponse | undefined> {
    if (this.count < 2) return Promise.resolve(undefined);
    const seq = ++this.seq;
    return new Promise((resolve) => {
      const answers: PeerInfoResponse[] = [];
      const done = (r: PeerInfoResponse | undefined): void => {
        clearTimeout(timer);
        this.asking.delete(seq);
        resolve(r);
      };
      const timer = setTimeout(() => done(best(answers, this.notFound)), SIBLING_TIMEOUT_MS);
      this.asking.set(seq, { answers, done, timer });
      this.port.send({ ntmDc: 'ask', from: this.index, seq, frame: encodePeer(m).toString('base64') });
    });
  }

  probeSeen(txid: bigint, id: Uint8Array, mapping: Endpoint): void {
    if (this.count < 2) return;
    if (this.probes.length === 0) setImmediate(this.sendProbes);
    this.probes.push([txid.toString(), Buffer.from(id).toString('hex'), formatEndpoint(mapping)]);
  }

  private receive(m: unknown): void {
    if (!isSiblingMessage(m)) return;
    if (m.ntmDc === 'ask') {
      const d = decodePeer(Buffer.from(m.frame, 'base64'));
      if (!d.ok || d.value.type !== Peer.PEER_INFO_REQUEST) return;
      this.onPeerInfo(d.value, (r) => this.port.send({ ntmDc: 'answer', to: m.from, seq: m.seq, frame: encodePeer(r).toString('base64') }));
    } else if (m.ntmDc === 'answer') {
      const a = this.asking.get(m.seq);
      const d = decodePeer(Buffer.from(m.frame, 'base64'));
      if (!a || !d.ok || d.value.type !== Peer.PEER_INFO_RESPONSE) return;
      a.answers.push(d.value);
      // A route ends the wait; otherwise every other worker has its say (or the timeout ends it).
      if (d.value.route || a.answers.length >= this.count - 1) a.done(best(a.answers, this.notFound));
    } else {
      for (const [txid, id, mapping] of m.probes) this.onProbe(BigInt(txid), Buffer.from(id, 'hex'), parseEndpoint(mapping));
    }
  }

  close(): void {
    this.port.off('message', this.listener);
    for (const a of [...this.asking.values()]) a.done(undefined);
  }
}
