// Errors of the EVM ledger client (registry/evm/contract.ts). A chain that does not answer is not an error: the client
// waits and retries (docs/ledger.md); these are the conditions retrying cannot cure.
import { NtmError } from '../../types/errors.js';

/** A transaction or call reverted with one of the contract's custom errors (`reason`), e.g. BlockOverlaps. */
export class ContractRevertError extends NtmError {
  override readonly name = 'ContractRevertError';
  override readonly code = 'contract_revert';
  constructor(
    readonly what: string,
    readonly reason: string,
  ) {
    super(`${what}: the contract refused it (${reason})`);
  }
}

/** The contract's compiled artifact is missing (the build did not run) or holds no code. */
export class ContractArtifactError extends NtmError {
  override readonly name = 'ContractArtifactError';
  override readonly code = 'contract_artifact';
}

/** No contract code at the configured address on the configured chain. */
export class NoContractError extends NtmError {
  override readonly name = 'NoContractError';
  override readonly code = 'no_contract';
  constructor(readonly address: string) {
    super(`no NtmRegistry contract at ${address}`);
  }
}

/** The client was closed while an operation still waited for the chain. */
export class ClientClosedError extends NtmError {
  override readonly name = 'ClientClosedError';
  override readonly code = 'client_closed';
  constructor() {
    super('the ledger client was closed');
  }
}

/** The chain did not answer a read within its deadline (a lookup the DC cannot wait longer for). */
export class ChainUnavailableError extends NtmError {
  override readonly name = 'ChainUnavailableError';
  override readonly code = 'chain_unavailable';
  constructor(
    readonly what: string,
    readonly afterMs: number,
  ) {
    super(`${what}: the chain did not answer within ${afterMs} ms`);
  }
}
