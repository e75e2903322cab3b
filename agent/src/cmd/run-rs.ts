// `ntm rs`: the Relay Server alone (paper §2.1, §2.3 Fig. 4): dual-stack, relays only DC-directed tunnels.
import { join } from 'node:path';
import { loadSection, readConfigFile, type SectionConfig } from '../config/schema.js';
import { RsServer } from '../rs/server.js';
import type { RelayLedger } from '../rs/ledger.js';
import { ConfigError } from '../types/errors.js';
import { ClientClosedError } from '../registry/evm/errors.js';
import type { Logger } from '../util/log.js';
import { createLogger } from '../util/log.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import type { Identity } from '../protocol/identity.js';
import { parseArgs, one, has, overrides } from './args.js';
import { announce, loadOrCreateIdentity, onShutdown, securedDataDir, processMemory, resolveIn } from './common.js';
import { ControlServer } from './control-socket.js';
import { rsOperator } from './operator.js';
import { EXIT_HELP } from './exit.js';

export const RS_HELP = `ntm rs — run a Relay Server alone

  ntm rs [--listen [::]:7200] [--data-dir DIR] --report-to 0xDCID@ADDR:PORT... \\
         [--trust 0xDCID]... [--advertise ADDR:PORT]...

It relays tunnels between ends that cannot reach each other (both behind NATs, or IPv4-only vs
IPv6-only), only when a trusted DC signed a ticket for that tunnel, within the ticket's quotas,
and never sees tunnel keys. It announces itself to the --report-to DCs (a signed HELLO, then its load
every rs.reportS), which route through it once they accept it: a DC started with
--accept-relay <this RS's ID> learns its addresses from the announcement and forgets it when it falls
silent (or, statically, --relay <this RS's ID>@<address>). --advertise gives the addresses the DCs
should hand out (one per family; none: the address its announcements come from). Prints one JSON
line with its ID when ready.

  --ledger evm --chain-rpc URL --chain-contract 0xCONTRACT [--dc 0xDCID]
                    also announce itself on the DCs' EVM chain (docs/ledger.md), from its own account
                    (its ID; funded for gas like a DC's), for the DC --dc (default: the first
                    --report-to): a DC on that chain takes it without --accept-relay. Without a
                    --report-to for it, it reports to the address in the DC's record on the chain.
                    A clean stop (SIGTERM: drained, retired) withdraws the announcement first
  --print-id        create the key if needed, print {id, publicKey} and exit
  --capacity N      tunnels it accepts (its reported load is active tunnels / N; default 10000)
  --metrics-listen ADDR:PORT   Prometheus /metrics (default 127.0.0.1:9101; "" disables)
  --config FILE     JSON config ({"rs": {...}}); --set rs.KEY=VALUE overrides any key
  ntm status --data-dir DIR --role rs    shows its tunnels, load and drop counters while it runs

Alone, on its own dual-stack host (UDP 7200 open), for the DC 0xDCID at 192.0.2.2:7100:
  ntm rs --data-dir /var/lib/ntm/rs --print-id              # {"id":"0xRSID",…}: the DC's --accept-relay
  ntm rs --data-dir /var/lib/ntm/rs --report-to 0xDCID@192.0.2.2:7100 \\
         --advertise 192.0.2.66:7200 --advertise [2001:db8:2::2]:7200
On the DCs' EVM chain, nothing to configure at the DC (its ID and address come from the chain):
  ntm rs --data-dir /var/lib/ntm/rs --ledger evm --chain-rpc http://10.0.0.1:8545 \
         --chain-contract 0xCONTRACT --dc 0xDCID --advertise 192.0.2.66:7200

${EXIT_HELP}`;

export async function runRs(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help', 'print-id']);
  if (has(p, 'help')) return void process.stdout.write(RS_HELP);
  const file = readConfigFile(one(p, 'config'));
  const adv = p.flags.get('advertise') ?? [];
  const ov = overrides(
    p,
    {
      listen: 'rs.listen',
      'data-dir': 'rs.dataDir',
      'report-to': 'rs.reportTo',
      trust: 'rs.trust',
      capacity: 'rs.capacityTunnels',
      'metrics-listen': 'operator.rsListen',
      ledger: 'rs.ledger',
      dc: 'rs.dc',
      'chain-rpc': 'rs.chainRpc',
      'chain-contract': 'rs.chainContract',
      'chain-deploy-block': 'rs.chainDeployBlock',
    },
    ['print-id', 'advertise'],
  );
  const fileCfg = loadSection('rs', file, ov);
  const op = loadSection('operator', file, ov);
  const log = createLogger(loadSection('log', file).level);
  securedDataDir(fileCfg.dataDir, log);
  const identity = await loadOrCreateIdentity(resolveIn(fileCfg.dataDir, fileCfg.key));
  if (has(p, 'print-id')) return announce({ id: identity.idHex, publicKey: identity.publicKey.toString('hex') });
  const chain = fileCfg.ledger === 'evm' ? await openChain(fileCfg, identity, log) : undefined;
  const cfg = chain?.cfg ?? fileCfg;
  const rs = await RsServer.start({ identity, config: cfg, log, advertise: adv.map(parseEndpoint) });
  // In the background: relaying does not wait for the chain, and the DC takes the RS once the announcement is mined.
  chain?.ledger.announce(chain.dc, rs.record).catch((e: unknown) => {
    if (!(e instanceof ClientClosedError)) log.error('not announced on the chain', { err: e });
  });
  const ctl = await ControlServer.listen(join(cfg.dataDir, 'rs.sock'), (req) => {
    if (req.cmd === 'status') return { ...rs.status(), memory: processMemory() };
    throw new Error(`unknown command ${String(req.cmd)}`);
  });
  const ops = await rsOperator(rs, op, log);
  announce({ role: 'rs', ready: true, id: identity.idHex, publicKey: identity.publicKey.toString('hex'), port: rs.port, metricsPort: ops?.port ?? null });
  onShutdown(log, async () => {
    // Off the chain first: the DC stops directing new tunnels here while the RS still relays the ones it has.
    await chain?.ledger.withdraw();
    await ops?.close();
    await ctl.close();
    await rs.stop();
  });
}

/**
 * The RS's EVM ledger (rs.ledger "evm"): the client it announces itself with, the DC it names, and its configuration
 * with that DC in reportTo (at the first address of the DC's record on the chain, waited for) when it was not there.
 */
async function openChain(cfg: Readonly<SectionConfig<'rs'>>, identity: Identity, log: Logger): Promise<{ ledger: RelayLedger; dc: string; cfg: Readonly<SectionConfig<'rs'>> }> {
  if (!cfg.chainRpc) throw new ConfigError('rs.chainRpc', 'is required with rs.ledger = evm');
  if (!cfg.chainContract) throw new ConfigError('rs.chainContract', 'is required with rs.ledger = evm');
  const dc = cfg.dc || cfg.reportTo[0]?.id;
  if (!dc) throw new ConfigError('rs.dc', 'names no DC to announce this RS to (nor does rs.reportTo)');
  // Loaded only with a chain: its client (viem) costs ~30 MB resident, and most RSs (the vCPEs' own) have none.
  const { RelayLedger } = await import('../rs/ledger.js');
  const ledger = await RelayLedger.connect({ rpcUrl: cfg.chainRpc, contract: cfg.chainContract, identity, log });
  if (cfg.reportTo.some((r) => r.id === dc)) return { ledger, dc, cfg };
  let waited = false;
  for (;;) {
    const [endpoint] = await ledger.dcEndpoints(dc);
    if (endpoint) {
      log.info('the DC\'s address from its record on the chain', { dc, endpoint: formatEndpoint(endpoint) });
      return { ledger, dc, cfg: Object.freeze({ ...cfg, reportTo: [...cfg.reportTo, { id: dc, endpoint }] }) };
    }
    if (!waited) log.warn('the DC has no record with an address on the chain yet; waiting', { dc });
    waited = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
