// The household's state in SQLite (module "household"), as one object for the runtime: devices (discovered and
// paired, with the NTM identity the agent holds for each), phones and their enrollments, access grants, the web
// owner, sessions and sign-in attempts, and a bounded event log. The work is done by its parts in household/:
// migrations.ts (the schema, append-only), validate.ts (what is accepted), journal.ts (transactions and events),
// devices.ts, phones.ts, grants.ts and owner.ts; this facade only opens the database, migrates it and forwards.
//
// Every change that touches more than one row is one transaction, so a crash or a refused step never leaves half of
// it saved; validation errors are InputError (with the field), NotFoundError or ConflictError and carry messages fit
// to show to the household. Threading: synchronous, on the event loop (better-sqlite3).
import type { DiscoveredDevice } from '../discovery/types.js';
import { migrate, openDb, type Db } from '../store/db.js';
import type { AgentEvent, DeviceView, GrantView, PairInput } from '../types/household.js';
import type { OwnerStore, SessionRecord } from '../types/owner.js';
import { DeviceStore, type DiscoveryResult, type NewIdentity, type PairedIdentity, type PairTarget } from './household/devices.js';
import { type AccessRule, GrantStore } from './household/grants.js';
import { Journal, type JournalOptions } from './household/journal.js';
import { HOUSEHOLD_MIGRATIONS } from './household/migrations.js';
import { SqliteOwnerStore } from './household/owner.js';
import { PhoneStore, type EnrollmentShare, type StoredPhone } from './household/phones.js';
import { QosStore } from './household/qos.js';
import { RemoteShareStore, type NewRemoteShare, type RemoteShareRecord } from './household/shares.js';

export type { NewRemoteShare, RemoteShareRecord };
export type { AccessRule, DiscoveryResult, NewIdentity, PairedIdentity, PairTarget, SessionRecord, StoredPhone };
export { HOUSEHOLD_MIGRATIONS };
export { LIMITS } from './household/validate.js';
export { OWNER } from './household/owner.js';

export type HouseholdStoreOptions = JournalOptions;

export class HouseholdStore implements OwnerStore {
  private readonly journal: Journal;
  private readonly deviceStore: DeviceStore;
  private readonly phoneStore: PhoneStore;
  private readonly grantStore: GrantStore;
  /** QoS rules and link rates (household/qos.ts). */
  readonly qos: QosStore;
  /** Devices other households shared with this one (household/shares.ts). */
  readonly remoteShares: RemoteShareStore;
  /** What the web server is given: the owner, the household's name, sessions, sign-in attempts. */
  readonly owner: SqliteOwnerStore;

  constructor(
    readonly db: Db,
    opts: HouseholdStoreOptions = {},
  ) {
    migrate(db, HOUSEHOLD_MIGRATIONS);
    this.journal = new Journal(db, opts);
    this.deviceStore = new DeviceStore(this.journal);
    this.phoneStore = new PhoneStore(this.journal);
    this.grantStore = new GrantStore(this.journal, this.phoneStore, this.deviceStore);
    this.owner = new SqliteOwnerStore(this.journal);
    this.qos = new QosStore(this.journal, this.phoneStore, this.deviceStore);
    this.remoteShares = new RemoteShareStore(this.journal, this.deviceStore);
  }

  /** Opens (creating if needed) the database file and the household schema in it. */
  static open(path: string, opts: HouseholdStoreOptions = {}): HouseholdStore {
    return new HouseholdStore(openDb(path), opts);
  }

  close(): void {
    this.db.close();
  }

  // --- devices (household/devices.ts) -------------------------------------------------------------------------

  devices(): DeviceView[] {
    return this.deviceStore.devices();
  }
  device(id: number): DeviceView {
    return this.deviceStore.device(id);
  }
  deviceByNtmId(ntmId: string): DeviceView | null {
    return this.deviceStore.deviceByNtmId(ntmId);
  }
  applyDiscovery(found: readonly DiscoveredDevice[]): DiscoveryResult {
    return this.deviceStore.applyDiscovery(found);
  }
  idOfDiscovered(d: DiscoveredDevice): number | undefined {
    return this.deviceStore.idOfDiscovered(d);
  }
  resolvePair(input: PairInput): PairTarget {
    return this.deviceStore.resolvePair(input);
  }
  pair(input: PairInput, identity: NewIdentity): DeviceView {
    return this.deviceStore.pair(input, identity);
  }
  unpair(deviceId: number): { device: DeviceView; ntmId: string } {
    return this.deviceStore.unpair(deviceId);
  }
  pairedIdentities(): PairedIdentity[] {
    return this.deviceStore.pairedIdentities();
  }

  // --- phones and enrollments (household/phones.ts) -----------------------------------------------------------

  phones(): StoredPhone[] {
    return this.phoneStore.phones();
  }
  /** Phones and other households: every peer the household's grants may name. */
  peers(): StoredPhone[] {
    return this.phoneStore.phones('all');
  }
  /** The other households this one shares a device with (peers of kind 'household', issue 13). */
  households(): StoredPhone[] {
    return this.phoneStore.phones('household');
  }
  phone(id: string): StoredPhone {
    return this.phoneStore.phone(id);
  }
  isAdmitted(ntmId: string): boolean {
    return this.phoneStore.isAdmitted(ntmId);
  }
  createEnrollment(
    name: unknown,
    secret: Uint8Array,
    expiresAt: number,
    share?: EnrollmentShare,
  ): { id: number; name: string; expiresAt: string } {
    return this.phoneStore.createEnrollment(name, secret, expiresAt, share);
  }
  pendingEnrollments(): { id: number; name: string; expiresAt: string }[] {
    return this.phoneStore.pendingEnrollments();
  }
  enrollmentOpen(secret: Uint8Array, phoneId: string): boolean {
    return this.phoneStore.enrollmentOpen(secret, phoneId);
  }
  consumeEnrollment(secret: Uint8Array, phoneId: string): StoredPhone | null {
    return this.phoneStore.consumeEnrollment(secret, phoneId);
  }
  removePhone(phoneId: string): StoredPhone {
    return this.phoneStore.removePhone(phoneId);
  }

  // --- access grants (household/grants.ts) --------------------------------------------------------------------

  grants(): GrantView[] {
    return this.grantStore.grants();
  }
  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): GrantView {
    return this.grantStore.setGrant(phoneId, deviceId, ports);
  }
  revokeGrant(phoneId: string, deviceId: number): void {
    this.grantStore.revokeGrant(phoneId, deviceId);
  }
  grantAllows(phoneId: string, deviceNtmId: string, port: number): boolean {
    return this.grantStore.grantAllows(phoneId, deviceNtmId, port);
  }
  accessRules(): AccessRule[] {
    return this.grantStore.accessRules();
  }

  // --- events (household/journal.ts) --------------------------------------------------------------------------

  addEvent(kind: string, message: string): AgentEvent {
    return this.journal.addEvent(kind, message);
  }
  events(limit?: number): AgentEvent[] {
    return this.journal.events(limit);
  }
  onEvent(listener: (e: AgentEvent) => void): () => void {
    return this.journal.onEvent(listener);
  }

  // --- the web owner, the household's name, sessions (household/owner.ts) -------------------------------------

  householdName(): string {
    return this.owner.householdName();
  }
  setHouseholdName(name: unknown, field?: string): string {
    return this.owner.setHouseholdName(name, field);
  }
  hasOwner(): boolean {
    return this.owner.hasOwner();
  }
  setupOwner(passwordHash: string, householdName?: string): void {
    this.owner.setupOwner(passwordHash, householdName);
  }
  ownerPasswordHash(): string | null {
    return this.owner.ownerPasswordHash();
  }
  changeOwnerPassword(passwordHash: string, keepSessionHash?: Buffer): void {
    this.owner.changeOwnerPassword(passwordHash, keepSessionHash);
  }
  resetOwner(): void {
    this.owner.resetOwner();
  }
  createSession(idHash: Buffer, csrf: string, expiresAt: number): void {
    this.owner.createSession(idHash, csrf, expiresAt);
  }
  session(idHash: Buffer): SessionRecord | null {
    return this.owner.session(idHash);
  }
  touchSession(idHash: Buffer, expiresAt: number): void {
    this.owner.touchSession(idHash, expiresAt);
  }
  deleteSession(idHash: Buffer): void {
    this.owner.deleteSession(idHash);
  }
  recordLoginFailure(client: string, at?: number): number {
    return this.owner.recordLoginFailure(client, at);
  }
  latestLoginFailure(): number | null {
    return this.owner.latestLoginFailure();
  }
  forgetLoginFailure(id: number): void {
    this.owner.forgetLoginFailure(id);
  }
  loginFailuresSince(since: number, client?: string): number {
    return this.owner.loginFailuresSince(since, client);
  }
  oldestLoginFailureSince(since: number, client: string): number | null {
    return this.owner.oldestLoginFailureSince(since, client);
  }
}
