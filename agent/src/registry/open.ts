// The ledger a DC's configuration names (dc.ledger): the hash-chained SQLite registry in the DC's own database (the
// embedded default, one household), or the NtmRegistry contract on an EVM chain (issue 12, docs/ledger.md), whose
// address blocks then become the DC's pools. Used by `ntm dc` and by the agent's embedded DC alike.
import type { SectionConfig } from '../config/schema.js';
import type { Db } from '../store/db.js';
import type { Identity } from '../protocol/identity.js';
import type { Registry } from '../types/registry.js';
import type { Logger } from '../util/log.js';
import { ConfigError } from '../types/errors.js';
import { defaultPools } from '../dc/pools.js';
import { parseCidr } from '../protocol/ip.js';
import { toHex } from '../crypto/hex.js';
import { SqliteRegistry } from './sqlite.js';

/**
 * The ledger the configuration names: the hash-chained SQLite registry in the DC's own database (the embedded
 * default), or the NtmRegistry contract (ledger "evm"), whose address blocks then become the DC's pools.
 */
export async function openLedger(
  cfg: Readonly<SectionConfig<'dc'>>,
  db: Db,
  identity: Identity,
  log: Logger,
  /** The DC's workers write the file together (dc.workers > 1, issue 15): only the SQLite ledger is built for that. */
  shared = false,
): Promise<{ registry: Registry; cfg: Readonly<SectionConfig<'dc'>> }> {
  if (cfg.ledger === 'sqlite') return { registry: new SqliteRegistry(db, shared), cfg };
  if (shared) throw new ConfigError('dc.workers', 'several DC workers need dc.ledger = sqlite (the EVM ledger\'s outbox is per process)');
  if (!cfg.chainRpc) throw new ConfigError('dc.chainRpc', 'is required with dc.ledger = evm');
  if (!cfg.chainContract) throw new ConfigError('dc.chainContract', 'is required with dc.ledger = evm');
  // Loaded only here: the chain client (viem) costs a process ~30 MB resident (agent_memory benchmark), and the
  // embedded default never uses it.
  const { EvmRegistry } = await import('./evm/registry.js');
  const registry = new EvmRegistry(db, { rpcUrl: cfg.chainRpc, contract: cfg.chainContract, deployBlock: cfg.chainDeployBlock, identity, log });
  const hint = defaultPools({ ...cfg, poolV4: '', poolV6: '' }, identity.id);
  const slot = (pool: string, range: string): number => {
    const p = parseCidr(pool);
    const r = parseCidr(range);
    return Number((BigInt(toHex(p.network)) - BigInt(toHex(r.network))) >> BigInt((p.family === 4 ? 32 : 128) - p.length));
  };
  log.info('claiming address blocks on the chain', { rpcUrl: cfg.chainRpc, contract: cfg.chainContract });
  const pools = await registry.claimBlocks({
    v4: { pool: cfg.poolV4, range: cfg.virtualV4, len: cfg.poolV4Length, hint: slot(hint.v4, cfg.virtualV4) },
    v6: { pool: cfg.poolV6, range: cfg.virtualV6, len: 48, hint: slot(hint.v6, cfg.virtualV6) },
  });
  log.info('address blocks', pools);
  return { registry, cfg: Object.freeze({ ...cfg, poolV4: pools.v4, poolV6: pools.v6 }) };
}
