// Errors of the NFQUEUE packet source and its firewall rules: one class per condition, each with a fixed name.
import { NtmError } from '../../types/errors.js';

/** An NFQUEUE could not be bound: not root (CAP_NET_ADMIN), the addon is missing, or the number is taken. */
export class QueueOpenError extends NtmError {
  override readonly name = 'QueueOpenError';
  override readonly code = 'queue_open';
  constructor(
    readonly queue: number,
    reason: string,
  ) {
    super(`NFQUEUE ${queue}: ${reason}`);
  }
}

/** A rule specification is unusable (bad prefix, port, queue number, chain prefix); `field` names the culprit. */
export class RuleSpecError extends NtmError {
  override readonly name = 'RuleSpecError';
  override readonly code = 'rule_spec';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`firewall rules, ${field}: ${message}`);
  }
}

/** An iptables-nft / ip6tables-nft command failed; stderr is kept for the log. */
export class FirewallCommandError extends NtmError {
  override readonly name = 'FirewallCommandError';
  override readonly code = 'firewall_command';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || '(no stderr)'}`);
  }
}
