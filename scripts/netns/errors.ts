// Error classes of the netns testbed: one per condition, each with a fixed name, so callers can tell them apart.

/** A topology file (or an option naming parts of it) is malformed; the message names the file and the offending key. */
export class TopologyError extends Error {
  override readonly name = 'TopologyError';
}

/** A testbed operation was asked for something impossible in its current state (prefix in use, unknown host, not root). */
export class TestbedError extends Error {
  override readonly name = 'TestbedError';
}

/** An external command (ip, nft, iptables-restore, a namespace setup script) failed; stderr is kept for the message. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${code ?? 'signal'}): ${stderr.trim() || '(no stderr)'}`);
  }
}
