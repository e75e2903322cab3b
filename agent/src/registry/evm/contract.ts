// The NtmRegistry contract (contracts/NtmRegistry.sol, paper §2.2-§2.3) through viem: deployment, batched submission
// of Node Transactions with the client's own nonce and retried until mined, reads, and the event log for a cache.
//
// Waiting is the normal case, not an error: a chain that does not answer (down, restarting, partitioned) is retried
// with backoff until it answers or the client is closed. Only a revert (the contract refuses) ends a write early.
// One write is in flight at a time (`writes` queue): a batch sized to the block's gas already fills a block, and a
// single nonce sequence with one outstanding transaction cannot leave a gap that blocks the ones after it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  defineChain,
  encodeDeployData,
  encodeFunctionData,
  getAddress,
  http,
  keccak256,
  parseEventLogs,
  TransactionReceiptNotFoundError,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
  type Transport,
} from 'viem';
import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts';
import { toHex } from '../../crypto/hex.js';
import { bytesToIp4, bytesToIp6, parseCidr } from '../../protocol/ip.js';
import { silentLogger, type Logger } from '../../util/log.js';
import { NtmRegistryAbi } from './abi.js';
import { ChainUnavailableError, ClientClosedError, ContractArtifactError, ContractRevertError, NoContractError } from './errors.js';

/** What became of one Node Transaction of a batch (the contract's Status enum, in its order). */
export const NT_STATUSES = ['accepted', 'duplicate', 'malformed', 'signature', 'public-key', 'wrong-dc', 'stale', 'revoked'] as const;
export type NtStatus = (typeof NT_STATUSES)[number];

/** On the ledger for a terminal: its managing DC, its newest Node Transaction's timestamp, and revocation. */
export interface TerminalState {
  readonly dc: string;
  readonly timestamp: number;
  readonly revoked: boolean;
}

export interface DcEntry {
  readonly id: string;
  /** 33-byte compressed key. */
  readonly publicKey: Buffer;
  /** The DC's signed directory record (protocol/dc-record.ts), as the DC published it. */
  readonly record: Buffer;
  readonly updatedAt: number;
}

/** A Relay Server's announcement (paper §3.1): the DC it serves, and its signed record (protocol/dc-record.ts, role RS). */
export interface RelayEntry {
  readonly id: string;
  readonly dc: string;
  /** 33-byte compressed key. */
  readonly publicKey: Buffer;
  readonly record: Buffer;
  readonly updatedAt: number;
}

/** A virtual address block claimed by a DC. */
export interface AddressBlock {
  readonly dc: string;
  /** "a.b.c.d/len" or "x::/len". */
  readonly cidr: string;
}

export interface BatchResult {
  readonly txHash: string;
  readonly blockNumber: number;
  readonly gasUsed: number;
  /** One per submitted Node Transaction, in order. */
  readonly statuses: NtStatus[];
}

/** A decoded contract event, in chain order (blockNumber, logIndex). */
export type LedgerEvent =
  | { readonly kind: 'node'; readonly block: number; readonly logIndex: number; readonly id: string; readonly dc: string; readonly timestamp: number; readonly revoked: boolean; readonly nt: Buffer }
  | { readonly kind: 'revoked-by-dc'; readonly block: number; readonly logIndex: number; readonly id: string; readonly dc: string }
  | { readonly kind: 'dc'; readonly block: number; readonly logIndex: number; readonly id: string; readonly publicKey: Buffer; readonly record: Buffer }
  | { readonly kind: 'block'; readonly block: number; readonly logIndex: number; readonly dc: string; readonly cidr: string }
  | { readonly kind: 'relay'; readonly block: number; readonly logIndex: number; readonly id: string; readonly dc: string; readonly publicKey: Buffer; readonly record: Buffer }
  | { readonly kind: 'relay-withdrawn'; readonly block: number; readonly logIndex: number; readonly id: string; readonly dc: string };

export interface ContractClientOptions {
  readonly rpcUrl: string;
  /** The contract's address. */
  readonly address: string;
  /** The sender's secp256k1 private key (a DC's identity key: its ID is its account). Absent: reads only. */
  readonly privateKey?: Uint8Array;
  /** How often to ask for a receipt or new events (ms). */
  readonly pollMs?: number;
  /** A sent transaction not mined after this long is sent again (ms); the same signed bytes, so at most one lands. */
  readonly rebroadcastMs?: number;
  /** Longest wait between attempts while the chain does not answer (ms). */
  readonly maxBackoffMs?: number;
  /** Timeout of one JSON-RPC request (ms). */
  readonly requestTimeoutMs?: number;
  readonly log?: Logger;
  /** connect() gives up (ClientClosedError) once this says so: its owner closed before the chain answered. */
  readonly abandoned?: () => boolean;
}

/**
 * Gas bounds of submit(): the contract does a fixed amount of work per entry (no loop depends on the ledger's size),
 * at most a first-time entry's new storage slot, ecrecover, modexp and a 148-byte event: 37,556 gas measured
 * (tests/bench/ledger.ts); the bound leaves room for calldata of all-non-zero bytes and a cold account.
 */
export const SUBMIT_GAS_PER_ENTRY = 42_000n;
export const SUBMIT_GAS_FIXED = 60_000n;

/** Gas limit of a submit() of `bytes` bytes of Node Transactions. */
export function submitGas(bytes: number): bigint {
  return SUBMIT_GAS_FIXED + SUBMIT_GAS_PER_ENTRY * BigInt(Math.ceil(bytes / 148));
}

/** The most Node Transactions one submit() may carry on a chain with this block gas limit (and under 128 KiB). */
export function maxBatch(blockGasLimit: bigint): number {
  return Math.max(1, Math.min(800, Number((blockGasLimit - SUBMIT_GAS_FIXED) / SUBMIT_GAS_PER_ENTRY)));
}

const lower = (a: string): string => a.toLowerCase();
/** The contract's 64-byte X‖Y from a 65-byte uncompressed key (or X‖Y already). */
const xyHex = (publicKey: Uint8Array): Hex => toHex(publicKey.length === 65 ? publicKey.subarray(1) : publicKey) as Hex;
const bytes = (h: Hex): Buffer => Buffer.from(h.slice(2), 'hex');

/** The compiled artifact written by the build (scripts/contracts.ts), for its creation code. */
export function loadArtifact(path = join(import.meta.dirname, '..', '..', '..', '..', 'contracts', 'NtmRegistry.json')): { bytecode: Hex; deployedBytecode: Hex } {
  let a: { bytecode?: string; deployedBytecode?: string };
  try {
    a = JSON.parse(readFileSync(path, 'utf8')) as typeof a;
  } catch (e) {
    throw new ContractArtifactError(`cannot read ${path} (did the build run?): ${(e as Error).message}`);
  }
  if (!a.bytecode?.startsWith('0x') || !a.deployedBytecode?.startsWith('0x') || a.bytecode.length < 4) throw new ContractArtifactError(`${path} holds no bytecode`);
  return { bytecode: a.bytecode as Hex, deployedBytecode: a.deployedBytecode as Hex };
}

/** "198.18.4.0/24" → the contract's (family, base, len). */
export function cidrToBlock(cidr: string): { family: 4 | 6; base: bigint; len: number } {
  const c = parseCidr(cidr);
  return { family: c.family, base: BigInt(toHex(c.network)), len: c.length };
}

export function blockToCidr(family: number, base: bigint, len: number): string {
  const hex = base.toString(16).padStart(family === 4 ? 8 : 32, '0');
  const b = Buffer.from(hex, 'hex');
  return `${family === 4 ? bytesToIp4(b) : bytesToIp6(b)}/${len}`;
}

/** The name of the contract's custom error inside a viem error, or undefined when it was not a revert. */
function revertReason(e: unknown): string | undefined {
  if (!(e instanceof BaseError)) return undefined;
  const r = e.walk((x) => x instanceof ContractFunctionRevertedError);
  if (r instanceof ContractFunctionRevertedError) return r.data?.errorName ?? r.reason ?? 'reverted';
  return undefined;
}

/**
 * An error's text with the node's own words: viem's short message for an RPC error is generic ("Transaction creation
 * failed." for every -32003), and what the node said ("nonce too low", "already imported") is in its details.
 */
function message(e: unknown): string {
  if (!(e instanceof BaseError)) return (e as Error)?.message ?? String(e);
  return e.details && !e.shortMessage.includes(e.details) ? `${e.shortMessage} ${e.details}` : e.shortMessage;
}

export class RegistryContract {
  readonly address: Address;
  readonly sender: string | undefined;
  private readonly client: PublicClient<Transport, Chain>;
  private readonly account: PrivateKeyAccount | undefined;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly rebroadcastMs: number;
  private readonly maxBackoffMs: number;
  private nonce: number | undefined;
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly wakers = new Set<() => void>();

  private constructor(opts: ContractClientOptions, chain: Chain) {
    this.address = getAddress(opts.address);
    this.client = createPublicClient({ chain, transport: http(opts.rpcUrl, { retryCount: 0, timeout: opts.requestTimeoutMs ?? 10_000 }) });
    this.account = opts.privateKey ? privateKeyToAccount(toHex(opts.privateKey) as Hex) : undefined;
    this.sender = this.account ? lower(this.account.address) : undefined;
    this.log = opts.log ?? silentLogger;
    this.pollMs = opts.pollMs ?? 250;
    this.rebroadcastMs = opts.rebroadcastMs ?? 5000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000;
  }

  /**
   * A client for the contract at `opts.address`: waits for the chain to answer (its chain ID signs transactions),
   * then checks that the address holds code. Throws NoContractError for an empty address.
   */
  static async connect(opts: ContractClientOptions): Promise<RegistryContract> {
    const probe = createPublicClient({ transport: http(opts.rpcUrl, { retryCount: 0, timeout: opts.requestTimeoutMs ?? 10_000 }) });
    const chainId = await RegistryContract.untilAnswered(() => probe.getChainId(), opts.log ?? silentLogger, opts.maxBackoffMs ?? 5000, opts.abandoned ?? (() => false));
    const c = new RegistryContract(opts, chainDefinition(chainId, opts.rpcUrl));
    const code = await c.retry('getCode', () => c.client.getCode({ address: c.address }));
    if (!code || code === '0x') throw new NoContractError(c.address);
    return c;
  }

  /** Deploys a new NtmRegistry from `privateKey`'s account; returns its address and the block it was mined in. */
  static async deploy(opts: Omit<ContractClientOptions, 'address'> & { readonly privateKey: Uint8Array; readonly artifact?: string }): Promise<{ address: string; block: number }> {
    const probe = createPublicClient({ transport: http(opts.rpcUrl, { retryCount: 0, timeout: opts.requestTimeoutMs ?? 10_000 }) });
    const chainId = await RegistryContract.untilAnswered(() => probe.getChainId(), opts.log ?? silentLogger, opts.maxBackoffMs ?? 5000, () => false);
    const c = new RegistryContract({ ...opts, address: '0x0000000000000000000000000000000000000000' }, chainDefinition(chainId, opts.rpcUrl));
    const { bytecode } = loadArtifact(opts.artifact);
    const data = encodeDeployData({ abi: NtmRegistryAbi, bytecode });
    const gas = await c.retry('estimate deployment', () => c.client.estimateGas({ account: c.account!, data }));
    const receipt = await c.transact('deploy', data, (gas * 12n) / 10n, undefined);
    if (!receipt.contractAddress) throw new ContractRevertError('deploy', 'no contract address in the receipt');
    c.close();
    return { address: lower(receipt.contractAddress), block: Number(receipt.blockNumber) };
  }

  /** Stops every wait; pending operations reject with ClientClosedError. */
  close(): void {
    this.closed = true;
    for (const w of this.wakers) w();
    this.wakers.clear();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Writes (need a private key).

  /** Publishes the sender as a DC: its 65-byte uncompressed key (or X‖Y) and its signed directory record. */
  async registerDc(publicKeyUncompressed: Uint8Array, record: Uint8Array): Promise<TransactionReceipt> {
    return this.write('registerDc', [xyHex(publicKeyUncompressed), toHex(record) as Hex]);
  }

  /**
   * Announces the sender as a Relay Server of DC `dc` (paper §3.1), with its key (as registerDc) and its signed record;
   * ContractRevertError('UnknownDc') when `dc` is not registered, ('BadPublicKey') when the key is not the sender's.
   */
  async announceRelay(publicKeyUncompressed: Uint8Array, dc: string, record: Uint8Array): Promise<TransactionReceipt> {
    return this.write('announceRelay', [xyHex(publicKeyUncompressed), getAddress(dc), toHex(record) as Hex]);
  }

  /** The sender stops relaying; ContractRevertError('NotARelay') when it has no announcement. */
  async withdrawRelay(): Promise<TransactionReceipt> {
    return this.write('withdrawRelay', []);
  }

  /** Claims exactly `cidr`; ContractRevertError('BlockOverlaps') when it overlaps a claimed block. */
  async claimBlock(cidr: string): Promise<string> {
    const b = cidrToBlock(cidr);
    await this.write('claimBlock', [b.family, b.base, b.len]);
    return blockToCidr(b.family, b.base, b.len);
  }

  /**
   * Claims the first free /len block inside `range`, trying from block number `start` on; returns it. The contract
   * picks, so DCs that claim at the same moment still get disjoint blocks.
   */
  async claimFreeBlock(range: string, len: number, start: number, tries = 256): Promise<string> {
    const r = cidrToBlock(range);
    const receipt = await this.write('claimFreeBlock', [r.family, r.base, r.len, len, BigInt(start), BigInt(tries)]);
    for (const ev of parseEventLogs({ abi: NtmRegistryAbi, logs: receipt.logs, eventName: 'BlockClaimed' })) {
      if (lower(ev.args.dc) === this.sender) return blockToCidr(ev.args.family, ev.args.base, ev.args.len);
    }
    throw new ContractRevertError('claimFreeBlock', 'no BlockClaimed event in the receipt');
  }

  /**
   * Submits Node Transactions (148 bytes each) in one transaction and waits until it is mined; the statuses come
   * from the receipt's NodeTransactionRefused events (an entry without one was accepted).
   */
  async submit(nts: readonly Uint8Array[]): Promise<BatchResult> {
    const packed = toHex(Buffer.concat(nts)) as Hex;
    const receipt = await this.write('submit', [packed]);
    const statuses: NtStatus[] = nts.map(() => 'accepted');
    for (const ev of parseEventLogs({ abi: NtmRegistryAbi, logs: receipt.logs, eventName: 'NodeTransactionRefused' })) {
      statuses[Number(ev.args.index)] = NT_STATUSES[ev.args.status] ?? 'malformed';
    }
    return { txHash: receipt.transactionHash, blockNumber: Number(receipt.blockNumber), gasUsed: Number(receipt.gasUsed), statuses };
  }

  /** Revokes terminals the sender manages, without their signature (sticky like a signed revocation). */
  async revokeByDc(ids: readonly string[]): Promise<TransactionReceipt> {
    return this.write('revokeByDc', [ids.map((i) => getAddress(i))]);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Reads (retried until the chain answers).

  async terminal(id: string, deadlineMs?: number): Promise<TerminalState | undefined> {
    const [dc, timestamp, revoked] = await this.retry(
      'terminal',
      () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'terminal', args: [getAddress(id)] }),
      deadlineMs,
    );
    if (BigInt(dc) === 0n) return undefined;
    return { dc: lower(dc), timestamp: Number(timestamp), revoked };
  }

  /** The newest accepted Node Transaction of `id` (from the event log; the contract stores only its fields). */
  async nodeTransaction(id: string, fromBlock = 0, deadlineMs?: number): Promise<Buffer | undefined> {
    const logs = await this.retry(
      'node transaction logs',
      () => this.client.getContractEvents({ address: this.address, abi: NtmRegistryAbi, eventName: 'NodeTransaction', args: { id: getAddress(id) }, fromBlock: BigInt(fromBlock), toBlock: 'latest' }),
      deadlineMs,
    );
    const last = logs.at(-1);
    return last ? bytes(last.args.nt!) : undefined;
  }

  async dcs(): Promise<DcEntry[]> {
    const n = await this.retry('dcCount', () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'dcCount' }));
    const out: DcEntry[] = [];
    for (let i = 0n; i < n; i++) {
      const id = await this.retry('dcAt', () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'dcAt', args: [i] }));
      const entry = await this.dc(id);
      if (entry) out.push(entry);
    }
    return out;
  }

  async dc(id: string, deadlineMs?: number): Promise<DcEntry | undefined> {
    const [publicKey, record, updatedAt] = await this.retry(
      'dc',
      () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'dc', args: [getAddress(id)] }),
      deadlineMs,
    );
    if (updatedAt === 0n) return undefined;
    return { id: lower(id), publicKey: bytes(publicKey), record: bytes(record), updatedAt: Number(updatedAt) };
  }

  async relay(id: string, deadlineMs?: number): Promise<RelayEntry | undefined> {
    const [dc, publicKey, record, updatedAt] = await this.retry(
      'relay',
      () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'relay', args: [getAddress(id)] }),
      deadlineMs,
    );
    if (updatedAt === 0n) return undefined;
    return { id: lower(id), dc: lower(dc), publicKey: bytes(publicKey), record: bytes(record), updatedAt: Number(updatedAt) };
  }

  /** Every Relay Server announced now, and the block the list was read at. */
  async relays(): Promise<{ relays: RelayEntry[]; block: number }> {
    const block = await this.blockNumber();
    const at = { blockNumber: BigInt(block) };
    const n = await this.retry('relayCount', () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'relayCount', ...at }));
    const out: RelayEntry[] = [];
    for (let i = 0n; i < n; i++) {
      const id = await this.retry('relayAt', () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'relayAt', args: [i], ...at }));
      const [dc, publicKey, record, updatedAt] = await this.retry('relay', () =>
        this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'relay', args: [id], ...at }),
      );
      out.push({ id: lower(id), dc: lower(dc), publicKey: bytes(publicKey), record: bytes(record), updatedAt: Number(updatedAt) });
    }
    return { relays: out, block };
  }

  async blocks(): Promise<AddressBlock[]> {
    const n = await this.retry('blockCount', () => this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'blockCount' }));
    const out: AddressBlock[] = [];
    for (let i = 0n; i < n; i++) {
      const [dc, family, base, len] = await this.retry('blockAt', () =>
        this.client.readContract({ address: this.address, abi: NtmRegistryAbi, functionName: 'blockAt', args: [i] }),
      );
      out.push({ dc: lower(dc), cidr: blockToCidr(family, base, len) });
    }
    return out;
  }

  /** The latest block's gas limit (what one batch must fit in). */
  async blockGasLimit(): Promise<bigint> {
    return (await this.retry('block', () => this.client.getBlock({ blockTag: 'latest' }))).gasLimit;
  }

  async blockNumber(): Promise<number> {
    return Number(await this.retry('blockNumber', () => this.client.getBlockNumber({ cacheTime: 0 })));
  }

  /** The contract's events in blocks [from, to], decoded, in chain order. */
  async events(from: number, to: number): Promise<LedgerEvent[]> {
    const logs = await this.retry('events', () =>
      this.client.getContractEvents({ address: this.address, abi: NtmRegistryAbi, fromBlock: BigInt(from), toBlock: BigInt(to) }),
    );
    const out: LedgerEvent[] = [];
    for (const l of logs) {
      const at = { block: Number(l.blockNumber), logIndex: l.logIndex };
      switch (l.eventName) {
        case 'NodeTransaction':
          out.push({ kind: 'node', ...at, id: lower(l.args.id!), dc: lower(l.args.dc!), timestamp: Number(l.args.timestamp), revoked: l.args.revoked!, nt: bytes(l.args.nt!) });
          break;
        case 'RevokedByDc':
          out.push({ kind: 'revoked-by-dc', ...at, id: lower(l.args.id!), dc: lower(l.args.dc!) });
          break;
        case 'DcRecord':
          out.push({ kind: 'dc', ...at, id: lower(l.args.dc!), publicKey: bytes(l.args.publicKey!), record: bytes(l.args.record!) });
          break;
        case 'BlockClaimed':
          out.push({ kind: 'block', ...at, dc: lower(l.args.dc!), cidr: blockToCidr(l.args.family!, l.args.base!, l.args.len!) });
          break;
        case 'RelayRecord':
          out.push({ kind: 'relay', ...at, id: lower(l.args.rs!), dc: lower(l.args.dc!), publicKey: bytes(l.args.publicKey!), record: bytes(l.args.record!) });
          break;
        case 'RelayWithdrawn':
          out.push({ kind: 'relay-withdrawn', ...at, id: lower(l.args.rs!), dc: lower(l.args.dc!) });
          break;
        default:
          break; // NodeTransactionRefused: the submitter reads it from its receipt
      }
    }
    return out;
  }

  /**
   * Calls `onEvents` with every event from block `from` on, then with each new block's, every `pollMs`, until the
   * returned stop() is called. `onEvents` gets the next block to ask for, to persist beside what it learnt.
   */
  follow(from: number, onEvents: (events: LedgerEvent[], next: number) => void | Promise<void>, maxRange = 2000): () => void {
    let stopped = false;
    let next = from;
    const loop = async (): Promise<void> => {
      while (!stopped && !this.closed) {
        try {
          const head = await this.blockNumber();
          while (next <= head && !stopped) {
            const to = Math.min(head, next + maxRange - 1);
            const evs = await this.events(next, to);
            next = to + 1;
            await onEvents(evs, next);
          }
        } catch (e) {
          if (e instanceof ClientClosedError) return;
          this.log.warn('ledger event poll failed', { err: e });
        }
        await this.sleep(this.pollMs);
      }
    };
    void loop();
    return () => {
      stopped = true;
    };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Transactions.

  private write<F extends 'submit' | 'registerDc' | 'announceRelay' | 'withdrawRelay' | 'claimBlock' | 'claimFreeBlock' | 'revokeByDc'>(
    functionName: F,
    args: readonly unknown[],
  ): Promise<TransactionReceipt> {
    if (!this.account) return Promise.reject(new ContractRevertError(functionName, 'no private key: this client only reads'));
    const account = this.account;
    const run = async (): Promise<TransactionReceipt> => {
      const call = { address: this.address, abi: NtmRegistryAbi, functionName, args, account } as Parameters<typeof this.client.estimateContractGas>[0];
      const data = encodeFunctionData({ abi: NtmRegistryAbi, functionName, args } as Parameters<typeof encodeFunctionData>[0]);
      const block = await this.blockGasLimit();
      let limit: bigint;
      if (functionName === 'submit') {
        // One run of the call catches a revert (NotADc, …) before anything is signed. Its gas comes from the bound
        // per entry, not eth_estimateGas: the estimate's binary search runs a full batch a dozen times (4 s on anvil
        // for 665 entries, longer than the block it is meant for).
        await this.retry(functionName, () => this.client.simulateContract({ ...call, gas: block } as Parameters<typeof this.client.simulateContract>[0]));
        limit = submitGas((args[0] as string).length / 2 - 1);
      } else {
        // The estimate runs the call: a revert (BlockOverlaps, …) ends here. claimFreeBlock may find more blocks
        // taken when it runs than when it was estimated (DCs starting together): each extra try is one more pass
        // over the claims, so it gets double. The rest get 20% headroom.
        const gas = await this.retry(functionName, () => this.client.estimateContractGas(call));
        limit = functionName === 'claimFreeBlock' ? gas * 2n : (gas * 12n) / 10n;
      }
      // Never above the block's gas limit: the node refuses such a transaction outright, however long we wait.
      return this.transact(functionName, data, limit < block ? limit : block, this.address);
    };
    const p = this.writes.then(run, run);
    this.writes = p.catch(() => undefined);
    return p;
  }

  /**
   * Signs with the next nonce and sends until a receipt shows it mined. If the nonce was taken by a transaction that
   * is not ours (another process with this key, or ours from before a restart), signs again with a fresh nonce:
   * the contract makes resubmitted Node Transactions harmless (status 'duplicate').
   */
  private async transact(what: string, data: Hex, gas: bigint, to: Address | undefined): Promise<TransactionReceipt> {
    const account = this.account!;
    for (;;) {
      const nonce = this.nonce ?? (await this.retry('nonce', () => this.client.getTransactionCount({ address: account.address, blockTag: 'pending' })));
      const fees = await this.retry('fees', () => this.client.estimateFeesPerGas());
      const signed = await account.signTransaction({
        chainId: this.client.chain.id,
        type: 'eip1559',
        ...(to ? { to } : {}),
        data,
        gas,
        nonce,
        // Headroom over the current base fee, so a transaction sent while blocks fill up still gets in.
        maxFeePerGas: fees.maxFeePerGas * 2n,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      });
      const hash = keccak256(signed);
      const receipt = await this.untilMined(what, signed, hash, nonce);
      if (receipt === 'nonce-taken') {
        this.nonce = undefined;
        continue;
      }
      this.nonce = nonce + 1;
      if (receipt.status !== 'success') {
        // Mined but reverted: the state changed between the estimate and the block. Say which call; no retry.
        throw new ContractRevertError(what, `transaction ${hash} reverted in block ${receipt.blockNumber}`);
      }
      return receipt;
    }
  }

  private async untilMined(what: string, signed: Hex, hash: Hex, nonce: number): Promise<TransactionReceipt | 'nonce-taken'> {
    let backoff = this.pollMs;
    for (;;) {
      this.throwIfClosed();
      try {
        await this.client.sendRawTransaction({ serializedTransaction: signed });
      } catch (e) {
        const m = message(e).toLowerCase();
        // "already known": the node has it (a rebroadcast). "nonce too low": mined already, ours or another's.
        if (!m.includes('already') && !m.includes('nonce too low') && !m.includes('nonce is too low')) {
          this.log.warn('ledger transaction not accepted by the node; retrying', { what, nonce, err: message(e) });
          await this.sleep(backoff);
          backoff = Math.min(this.maxBackoffMs, backoff * 2);
          continue;
        }
      }
      backoff = this.pollMs;
      const deadline = Date.now() + this.rebroadcastMs;
      while (Date.now() < deadline) {
        this.throwIfClosed();
        try {
          return await this.client.getTransactionReceipt({ hash });
        } catch (e) {
          if (!(e instanceof TransactionReceiptNotFoundError) && !(e instanceof BaseError && e.walk((x) => x instanceof TransactionReceiptNotFoundError))) {
            this.log.debug('receipt poll failed', { what, err: message(e) });
          }
        }
        await this.sleep(this.pollMs);
      }
      // Not mined yet. If the account's mined nonce moved past ours without our receipt, someone else used it.
      const mined = await this.client.getTransactionCount({ address: this.account!.address, blockTag: 'latest' }).catch(() => undefined);
      if (mined !== undefined && mined > nonce) {
        const r = await this.client.getTransactionReceipt({ hash }).catch(() => undefined);
        if (r) return r;
        this.log.warn('ledger transaction nonce used by another transaction; signing again', { what, nonce });
        return 'nonce-taken';
      }
      this.log.info('ledger transaction not mined yet; sending it again', { what, nonce, hash });
    }
  }

  /**
   * Runs `f` until it returns, retrying transport failures with backoff; a revert is a ContractRevertError. With a
   * deadline, ChainUnavailableError once it passes.
   */
  private retry<T>(what: string, f: () => Promise<T>, deadlineMs?: number): Promise<T> {
    return RegistryContract.untilAnswered(f, this.log, this.maxBackoffMs, () => this.closed, what, deadlineMs);
  }

  private static async untilAnswered<T>(f: () => Promise<T>, log: Logger, maxBackoffMs: number, closed: () => boolean, what = 'chain', deadlineMs?: number): Promise<T> {
    let backoff = 100;
    let warned = false;
    const end = deadlineMs === undefined ? Infinity : Date.now() + deadlineMs;
    for (;;) {
      if (closed()) throw new ClientClosedError();
      if (Date.now() > end) throw new ChainUnavailableError(what, deadlineMs!);
      try {
        const v = await f();
        if (warned) log.info('chain answers again', { what });
        return v;
      } catch (e) {
        const reason = revertReason(e);
        if (reason !== undefined) throw new ContractRevertError(what, reason);
        if (deadlineMs !== undefined && Date.now() + backoff > end) throw new ChainUnavailableError(what, deadlineMs);
        if (!warned) log.warn('chain does not answer; retrying', { what, err: message(e) });
        warned = true;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(maxBackoffMs, backoff * 2);
      }
    }
  }

  private throwIfClosed(): void {
    if (this.closed) throw new ClientClosedError();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.wakers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }
}

function chainDefinition(id: number, rpcUrl: string): Chain {
  return defineChain({ id, name: `ntm-ledger-${id}`, nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [rpcUrl] } } });
}
