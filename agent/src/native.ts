// Loads the data plane's native fast path (agent/native/: one C file per unit, built by `npm run build:native`).
// Everything that uses it has a TypeScript (or node-nfqueue) fallback, so a host without the addon still works, only
// slower.
import { createRequire } from 'node:module';
import { join } from 'node:path';

export interface NativeNfqSource {
  readonly arena: ArrayBuffer;
  readonly out: ArrayBuffer;
  readonly meta: Int32Array;
  readonly verdicts: Int32Array;
  start(onBurst: (count: number) => void): void;
  settle(id: number, verdict: number, mark: number, payload?: Uint8Array): void;
  close(): void;
  stats(): Record<string, number>;
}

export interface NativeRawInjector {
  /** 0 or -errno. */
  inject(packet: Uint8Array): number;
  /** 0, or -errno (not an IP packet of a family this host has). */
  queue(packet: Uint8Array): number;
  /** How many queued packets the kernel refused. */
  flush(): number;
  stats(): Record<string, number>;
}

export interface NativeTunWriter {
  /** The device's name (the kernel's pick where the name asked for held "%d"). */
  readonly name: string;
  /** 0 queued (coalesced with its flow's segments where it can be); 1 not taken (not TCP, or a family not carried); -errno. */
  queue(packet: Uint8Array): number;
  /** Writes everything queued (one write per coalesced packet); how many the kernel refused. */
  flush(): number;
  stats(): Record<string, number>;
  /** Writes what is queued and closes the device (it goes with its last file). */
  close(): void;
}

export interface NativeUdpSocket {
  /** Two halves; a burst is in one (`half` of onBurst): meta's and addrs' entries from half × (their length / 2). */
  readonly arena: ArrayBuffer;
  /** Plaintexts of the DATA datagrams the opening thread opened, at each datagram's arena offset + 16. */
  readonly plain: ArrayBuffer;
  /** Per datagram: arena offset, length, port, family, opened (0 not, 1 authentic, 2 tag failed), key generation. */
  readonly meta: Int32Array;
  readonly addrs: Uint8Array;
  readonly port: number;
  readonly family: 4 | 6;
  /** `open`: start the opening thread (agent/native/rxopen.c); returns whether it runs. */
  start(onBurst: (count: number, half: number) => void, open?: boolean): boolean;
  /** 0 or -errno; `ttl` (1..255) sets the datagram's TTL / hop limit. Sends what is queued first. */
  send(data: Uint8Array, address: string, port: number, ttl?: number): number;
  /** Copies the datagram for the next flush() (UDP GSO runs in one sendmmsg); 0 or -errno. */
  queue(data: Uint8Array, address: string, port: number): number;
  /**
   * Queues prefix ‖ plaintext to be sealed at the flush (ChaCha20-Poly1305 under key32 and the counter's nonce, the tag
   * appended), on the socket's sealing thread unless NTM_NO_TX_THREAD is set; 0 or -errno. Absent in a stale build.
   */
  queueSeal?(prefix: Uint8Array, key: Uint8Array, counter: number, plaintext: Uint8Array, address: string, port: number): number;
  /**
   * A TCP GSO packet cut into segments (of at most the peer's MSS and `mtu`) and each queued as queueSeal() does, under
   * counter, counter + 1, …; the segment count (at most maxSegs), or -errno (-EINVAL: not TCP) and nothing queued.
   */
  queueSealGso?(prefix: Uint8Array, key: Uint8Array, counter: number, packet: Uint8Array, mtu: number, maxSegs: number, address: string, port: number): number;
  flush(): void;
  close(): void;
  stats(): Record<string, number>;
}

export interface NativeAddon {
  /**
   * gsoMtu > 0: packets come unsegmented (NFQA_CFG_F_GSO) and TCP ones are cut into segments of at most gsoMtu bytes;
   * with `whole`, TCP GSO packets are handed over uncut instead (meta's 7th field 1).
   */
  NfqSource: new (queue: number, maxBatch: number, arenaBytes: number, rcvbufBytes: number, queueMaxlen: number, gsoMtu?: number, whole?: boolean) => NativeNfqSource;
  /** inject() sends at once; queue() copies and flush() sends everything queued with one sendmmsg per family run. */
  RawInjector: new () => NativeRawInjector;
  /** A TUN device with IFF_VNET_HDR and TSO offloads, up, for decrypted TCP (families: 1 IPv4, 2 IPv6, 3 both). */
  TunWriter: new (name: string, families: number) => NativeTunWriter;
  /** `reuseport` 1: SO_REUSEPORT before bind (several processes share the port; the DC's workers). */
  UdpSocket: new (address: string, port: number, rcvbuf?: number, sndbuf?: number, reuseport?: number) => NativeUdpSocket;
  /**
   * gso.c, as the GSO queue uses it (exposed for tests): cuts a TCP GSO packet into segments of at most `mtu` bytes and
   * the peer's MSS, written into `out`; [offset, length, …] of each, or null (not TCP, or no room).
   */
  gsoSegment(packet: Uint8Array, mtu: number, out: Uint8Array): number[] | null;
  /** Learns the MSS option of a TCP SYN going to the LAN (inject() calls it with every packet). */
  tcpMssLearn(packet: Uint8Array): void;
  /** Completes a TCP or UDP checksum the kernel left partial; 0, or -1 (neither). */
  completeChecksum(packet: Uint8Array): number;
  /** Keccak-256 of `data` into `out` (≥ 32 bytes). */
  keccak256(data: Uint8Array, out: Uint8Array): void;
  /** HMAC-SHA256 under `key` (≤ 64 bytes) of `data` into `out` (≥ 32 bytes). */
  hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void;
  /** rxopen.c: the receive key of a DATA keypair by its local index for the opening thread; its generation (0: not taken). */
  rxKeyAdd(index: number, key: Uint8Array): number;
  /** Wipes the key of `index` if it is still generation `gen`'s. */
  rxKeyRemove(index: number, gen: number): void;
  /** Keys held (tests). */
  rxKeyCount(): number;
  ChaChaPoly: new () => {
    seal(key: Uint8Array, counter: number, src: Uint8Array, dst: Uint8Array, aad?: Uint8Array): number;
    open(key: Uint8Array, counter: number, src: Uint8Array, dst: Uint8Array, aad?: Uint8Array): number;
  };
}

let loaded: { addon: NativeAddon | null; error: Error | null } | undefined;

/** The addon, or null (with the reason in nativeLoadError()) when it is not built for this Node. */
export function nativeAddon(): NativeAddon | null {
  if (!loaded) {
    try {
      // dist/agent/src/native.js → agent/native/build/Release/ntmdp.node at the project root.
      const path = join(import.meta.dirname, '..', '..', '..', 'agent', 'native', 'build', 'Release', 'ntmdp.node');
      loaded = { addon: createRequire(import.meta.url)(path) as NativeAddon, error: null };
    } catch (e) {
      loaded = { addon: null, error: e as Error };
    }
    if (process.env.NTM_NO_NATIVE === '1') loaded = { addon: null, error: new Error('disabled by NTM_NO_NATIVE=1') };
  }
  return loaded.addon;
}

export function nativeLoadError(): Error | null {
  nativeAddon();
  return loaded?.error ?? null;
}
