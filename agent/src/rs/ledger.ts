// An RS announcing itself to its DC on the EVM ledger (paper §3.1: relays that come and go with load tell their DC
// they are there; docs/ledger.md "Relay Servers"): the NtmRegistry contract's announceRelay from the RS's own account
// (its ID), naming the one DC it serves, with its signed record (protocol/dc-record.ts, role RS: its endpoints); and
// withdrawRelay when it stops cleanly (drained, retired, SIGTERM). A DC on that ledger takes the RSs listed for it
// without dc.acceptRelays (dc/relays.ts onLedger). The RS also finds its DC's address in the DC's record there.
//
// Waiting is normal: a chain that does not answer is retried (registry/evm/contract.ts), and a DC not yet registered
// on the contract (it registers as it starts) is asked again every few seconds. Runs on the RS's event loop.
import type { Endpoint } from '../types/net.js';
import type { Identity } from '../protocol/identity.js';
import { decodeServerRecord } from '../protocol/dc-record.js';
import { RegistryContract } from '../registry/evm/contract.js';
import { ClientClosedError, ContractRevertError } from '../registry/evm/errors.js';
import { silentLogger, type Logger } from '../util/log.js';

export interface RelayLedgerOptions {
  readonly rpcUrl: string;
  readonly contract: string;
  /** The RS: its identity key is its chain account (funded for gas, as a DC's). */
  readonly identity: Identity;
  readonly log?: Logger;
  /** How often to ask again for a DC not yet on the contract (ms). */
  readonly retryMs?: number;
}

export class RelayLedger {
  private announced = false;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  private constructor(
    private readonly c: RegistryContract,
    private readonly opts: RelayLedgerOptions,
    private readonly log: Logger,
  ) {}

  /** Connects (waits for the chain to answer; NoContractError when the address holds no contract). */
  static async connect(opts: RelayLedgerOptions): Promise<RelayLedger> {
    const log = (opts.log ?? silentLogger).child({ part: 'ledger' });
    const key = opts.identity.exportPrivateKey();
    const c = await RegistryContract.connect({ rpcUrl: opts.rpcUrl, address: opts.contract, privateKey: key, pollMs: 250, log }).finally(() => key.fill(0));
    return new RelayLedger(c, opts, log);
  }

  /**
   * The endpoints of DC `dc`'s record on the contract (its advertised addresses), or none when it is not registered
   * yet or its record names none.
   */
  async dcEndpoints(dc: string): Promise<readonly Endpoint[]> {
    const entry = await this.c.dc(dc);
    if (!entry || entry.record.length === 0) return [];
    const rec = decodeServerRecord(entry.record);
    return rec.ok && rec.value.role === 'dc' ? rec.value.endpoints : [];
  }

  /**
   * Announces this RS for `dc` with `record`, once the contract knows `dc`; resolves when it is mined (or rejects
   * with ClientClosedError after close()).
   */
  async announce(dc: string, record: Uint8Array): Promise<void> {
    let waited = false;
    for (;;) {
      try {
        const receipt = await this.c.announceRelay(this.opts.identity.publicKeyUncompressed, dc, record);
        this.announced = true;
        this.log.info('announced on the chain', { dc, block: Number(receipt.blockNumber) });
        return;
      } catch (e) {
        if (!(e instanceof ContractRevertError && e.reason === 'UnknownDc') || this.closed) throw e;
        if (!waited) this.log.warn('the DC is not on the chain yet; announcing once it is', { dc });
        waited = true;
        await new Promise<void>((r) => (this.retry = setTimeout(r, this.opts.retryMs ?? 2000)));
        if (this.closed) throw new ClientClosedError();
      }
    }
  }

  /**
   * Withdraws the announcement (if one was mined), waiting at most `deadlineMs` for it, then closes the client. The
   * caller's shutdown goes on either way: a withdrawal that does not land leaves the RS listed, and the DC ranks it
   * as full once its load reports stop (dc/core.ts relaySilent).
   */
  async withdraw(deadlineMs = 4000): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    if (this.announced) {
      const done = this.c.withdrawRelay().then(
        (r) => this.log.info('withdrawn from the chain', { block: Number(r.blockNumber) }),
        (e: unknown) => this.log.warn('withdrawal from the chain failed', { err: e }),
      );
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((r) => (timer = setTimeout(() => (this.log.warn('withdrawal from the chain not mined in time', { deadlineMs }), r()), deadlineMs)));
      await Promise.race([done, late]);
      clearTimeout(timer);
    }
    this.c.close();
  }
}
