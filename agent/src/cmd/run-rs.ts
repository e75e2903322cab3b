// `ntm rs`: the Relay Server alone (paper §2.1, §2.3 Fig. 4): dual-stack, relays only DC-directed tunnels.
import { join } from 'node:path';
import { loadSection, readConfigFile } from '../config/schema.js';
import { RsServer } from '../rs/server.js';
import { createLogger } from '../util/log.js';
import { parseEndpoint } from '../protocol/endpoint.js';
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

  --print-id        create the key if needed, print {id, publicKey} and exit
  --capacity N      tunnels it accepts (its reported load is active tunnels / N; default 10000)
  --metrics-listen ADDR:PORT   Prometheus /metrics (default 127.0.0.1:9101; "" disables)
  --config FILE     JSON config ({"rs": {...}}); --set rs.KEY=VALUE overrides any key
  ntm status --data-dir DIR --role rs    shows its tunnels, load and drop counters while it runs

Alone, on its own dual-stack host (UDP 7200 open), for the DC 0xDCID at 192.0.2.2:7100:
  ntm rs --data-dir /var/lib/ntm/rs --print-id              # {"id":"0xRSID",…}: the DC's --accept-relay
  ntm rs --data-dir /var/lib/ntm/rs --report-to 0xDCID@192.0.2.2:7100 \\
         --advertise 192.0.2.66:7200 --advertise [2001:db8:2::2]:7200

${EXIT_HELP}`;

export async function runRs(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help', 'print-id']);
  if (has(p, 'help')) return void process.stdout.write(RS_HELP);
  const file = readConfigFile(one(p, 'config'));
  const adv = p.flags.get('advertise') ?? [];
  const ov = overrides(
    p,
    { listen: 'rs.listen', 'data-dir': 'rs.dataDir', 'report-to': 'rs.reportTo', trust: 'rs.trust', capacity: 'rs.capacityTunnels', 'metrics-listen': 'operator.rsListen' },
    ['print-id', 'advertise'],
  );
  const cfg = loadSection('rs', file, ov);
  const op = loadSection('operator', file, ov);
  const log = createLogger(loadSection('log', file).level);
  securedDataDir(cfg.dataDir, log);
  const identity = await loadOrCreateIdentity(resolveIn(cfg.dataDir, cfg.key));
  if (has(p, 'print-id')) return announce({ id: identity.idHex, publicKey: identity.publicKey.toString('hex') });
  const rs = await RsServer.start({ identity, config: cfg, log, advertise: adv.map(parseEndpoint) });
  const ctl = await ControlServer.listen(join(cfg.dataDir, 'rs.sock'), (req) => {
    if (req.cmd === 'status') return { ...rs.status(), memory: processMemory() };
    throw new Error(`unknown command ${String(req.cmd)}`);
  });
  const ops = await rsOperator(rs, op, log);
  announce({ role: 'rs', ready: true, id: identity.idHex, publicKey: identity.publicKey.toString('hex'), port: rs.port, metricsPort: ops?.port ?? null });
  onShutdown(log, async () => {
    await ops?.close();
    await ctl.close();
    await rs.stop();
  });
}
