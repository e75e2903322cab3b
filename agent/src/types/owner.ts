// What the household's web server keeps about who may use it: the owner's password hash, the household's name,
// sessions and failed sign-ins. Interfaces only. Implemented by the household store (agent/src/agent/household/
// owner.ts, through the HouseholdStore facade); web-ui/server depends on this and on AgentApi, never on the store.

/** A signed-in browser's session as stored (the session id itself is kept only as its SHA-256). */
export interface SessionRecord {
  readonly user: string;
  readonly csrf: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly expiresAt: number;
}

export interface OwnerStore {
  /** True once the owner's password is set (first-start setup is done). */
  hasOwner(): boolean;
  /**
   * First start: sets the owner's password hash (and the household's name, when given) in one transaction.
   * InputError (field "household") for an unusable name; ConflictError when an owner exists.
   */
  setupOwner(passwordHash: string, householdName?: string): void;
  ownerPasswordHash(): string | null;
  /** Replaces the owner's password hash and ends every session but `keepSessionHash`. NotFoundError before setup. */
  changeOwnerPassword(passwordHash: string, keepSessionHash?: Buffer): void;

  /** The household's name, shown on the page and on phones that join ("Home" until one is given). */
  householdName(): string;
  /** Renames the household; InputError naming `field` for an unusable name. Returns the name as stored. */
  setHouseholdName(name: unknown, field?: string): string;

  createSession(idHash: Buffer, csrf: string, expiresAt: number): void;
  /** The session with this id hash, or null when unknown or expired. */
  session(idHash: Buffer): SessionRecord | null;
  touchSession(idHash: Buffer, expiresAt: number): void;
  deleteSession(idHash: Buffer): void;

  /**
   * Counts a failed sign-in by `client` (an address or IPv6 /64) at once, at `at` (the sign-in limiter's clock, which
   * only goes up; default the store's clock); returns its id for forgetLoginFailure.
   */
  recordLoginFailure(client: string, at?: number): number;
  /** The time of the latest failure stored, or null (the sign-in limiter's clock starts no earlier). */
  latestLoginFailure(): number | null;
  /** Withdraws a failure recorded in advance (the password was right). */
  forgetLoginFailure(id: number): void;
  /** Failed sign-ins since `since` (ms), by one client or (client undefined) by all. */
  loginFailuresSince(since: number, client?: string): number;
  /** The oldest failure since `since` by this client (to compute Retry-After), or null. */
  oldestLoginFailureSince(since: number, client: string): number | null;
}
