// The NFQUEUE packet source (Linux netfilter queue), its in-memory fake, and the firewall rules that feed it.
// Importing this module does not load the native addon; `openNfqueueSource` does, on first use.
export { openNfqueueSource, DEFAULT_SOCKET_BUFFER } from './source.js';
export type { NfqueueSourceOptions } from './source.js';
export { FakePacketSource } from './fake.js';
export type { FakeVerdict, FakeInjectMeta, FakePacketSourceOptions } from './fake.js';
export { OverlayFirewall, runCommand, DEFAULT_TOOLS } from './rules.js';
export type { OverlayRuleSpec, CommandRunner, CommandResult, FirewallTools, FirewallOptions } from './rules.js';
export { QueueOpenError, RuleSpecError, FirewallCommandError } from './errors.js';
export { openBatchSource, batchSourceAvailable } from './batch-source.js';
export type { BatchSourceOptions } from './batch-source.js';
export { openPacketSource } from './open.js';
