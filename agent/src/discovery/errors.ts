// Typed errors of LAN discovery, one class per condition (STYLE habit 5). Discovery logs them; it never stops for them.
import { NtmError } from '../types/errors.js';

/** A system tool discovery runs (ip, avahi-resolve) failed or timed out. */
export class DiscoveryCommandError extends NtmError {
  override readonly name = 'DiscoveryCommandError';
  override readonly code = 'discovery_command';
  constructor(
    readonly command: string,
    readonly detail: string,
  ) {
    super(`${command}: ${detail}`);
  }
}

/** The mDNS side is unavailable: the `mdns` module did not load or the Avahi daemon is not reachable over D-Bus. */
export class MdnsUnavailableError extends NtmError {
  override readonly name = 'MdnsUnavailableError';
  override readonly code = 'mdns_unavailable';
}
