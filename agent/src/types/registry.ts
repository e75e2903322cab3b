// The node-transaction ledger boundary (paper §2.2: the DC records Node Transactions on a chain through a smart contract).
// Implementations: registry/sqlite.ts (embedded default, hash-chained); an EVM contract backend later. No dependencies.

/** What a ledger entry holds: a Node Transaction of a terminal, or a DC's signed directory record. */
export type RegistryKind = 'node' | 'dc';

export interface RegistryRecord {
  /** Position in this ledger, from 1. */
  readonly seq: number;
  readonly kind: RegistryKind;
  /** The subject's ID, `0x` + 40 hex digits. */
  readonly id: string;
  /** The signed, encoded entry (e.g. the 148-byte Node Transaction); verified before it was appended. */
  readonly bytes: Uint8Array;
  /** keccak256(prevHash ‖ kind ‖ bytes): each entry commits to everything before it. */
  readonly hash: Uint8Array;
  readonly prevHash: Uint8Array;
}

export type ChainReport =
  | { readonly ok: true; readonly length: number; readonly head: Uint8Array }
  | { readonly ok: false; readonly length: number; readonly badSeq: number; readonly reason: string };

export interface Registry {
  /** Appends an already-verified entry. Idempotent for identical bytes already at the head for that id. */
  append(kind: RegistryKind, id: string, bytes: Uint8Array): Promise<RegistryRecord>;
  /** The newest entry of that kind for that id, if any. */
  latest(kind: RegistryKind, id: string): Promise<RegistryRecord | undefined>;
  /** Entries after `seq` in ledger order, at most `limit` (replication between DCs). */
  since(seq: number, limit: number): Promise<RegistryRecord[]>;
  /** Recomputes the whole hash chain. */
  verify(): Promise<ChainReport>;
  /** Number of entries. */
  length(): Promise<number>;
  close(): Promise<void>;
}
