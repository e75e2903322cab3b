// `ntm dc`: the Direction Coordinator alone (paper §2.1–2.3), as on its own server in the paper's topology.
import { join } from 'node:path';
import { loadSection, readConfigFile } from '../config/schema.js';
import { openDb } from '../store/db.js';
import { DcServer } from '../dc/server.js';
import { openDcBinds } from '../dc/binds.js';
import { createLogger } from '../util/log.js';
import { parseArgs, one, has, overrides } from './args.js';
import { missingNodeFlags } from './node-flags.js';
import { announce, loadOrCreateIdentity, onShutdown, securedDataDir, processMemory, resolveIn } from './common.js';
import { ControlServer } from './control-socket.js';
import { ConfigError, InputError, IntegrityError } from '../types/errors.js';
import { IpcSiblings } from '../dc/siblings.js';
import { Status } from '../protocol/control.js';
import { serveWorkerControl, superviseDcWorkers, workerOf } from './dc-workers.js';
import { openLedger } from '../registry/open.js';
import { dcOperator } from './operator.js';
import { startRsAutoscaler } from './rs-autoscale.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { EXIT_HELP } from './exit.js';
import * as NT from '../protocol/node-transaction.js';
import { formatId } from '../crypto/secp256k1.js';
import type { Identity } from '../protocol/identity.js';

export const DC_HELP = `ntm dc — run a Direction Coordinator alone

  ntm dc [--listen [::]:7100] [--data-dir DIR] [--advertise ADDR:PORT]... \\
         [--peer 0xID@ADDR:PORT]... [--relay 0xID@ADDR:PORT]... [--pool 198.18.1.0/24] [--pool6 PREFIX/48]

It registers terminals (virtual IPv4/IPv6 addresses; Node Transactions in a hash-chained SQLite
registry under DIR), keeps NAT mappings alive, answers Direction Requests and federates with the
--peer DCs. The NAT-probe port is the listen port + 1. On start it prints one JSON line with its
ID and public key; terminals need "<publicKey>@<address>:<port>" as their --dc.

  --print-id        create the key if needed, print {id, publicKey} and exit
  --keepalive S     keep-alive period towards terminals behind NATs (default 20 s)
  --workers N       N DC processes on the same ports (SO_REUSEPORT) and the same dc.db (default 1):
                    for a DC with cores to spare; needs a fixed --listen port and the native socket.
                    No operator API, RS autoscaler or lease expiry then (README "A DC on several cores")
  --operator-listen ADDR:PORT  operator API and /metrics (default 127.0.0.1:9100; "" disables):
                    the ISP's side only; the bearer token is in DIR/operator-token
  --admission open|key         "key": a new terminal must present an enrollment key (\`ntm keys\`)
  --accept-relay 0xRSID        an RS this DC takes when it announces itself (ntm rs --report-to this DC):
                    no --relay address needed; forgotten when silent for dc.relayForgetS
  --set rsscale.max=N          run up to N RS instances beside the DC, started and retired with the
                    relayed load (rsscale.*: see \`ntm config\`; the household agent takes the same keys)
  --pool CIDR       its IPv4 pool (default: a /16 of dc.virtualV4 chosen from its ID; dc.poolV4Length)
  --set dc.expireAfterS=S      a terminal not heard from for S seconds of the DC's running time loses its
                    address to the pool (default 30 days; 0 never). A full pool refuses new terminals
                    with an answer they show (ntm up exits 75)
  --config FILE     JSON config ({"dc": {...}}); --set dc.KEY=VALUE overrides any key (see \`ntm config\`)
  ntm status --data-dir DIR --role dc    shows its state while it runs
  its control socket (DIR/dc.sock) also takes {"cmd":"revoke","id":"0xID"} and {"cmd":"reinstate","id":"0xID"}

Alone, on its own host (UDP 7100 and 7101 open), with an RS elsewhere:
  ntm dc --data-dir /var/lib/ntm/dc --print-id              # {"id":"0xDCID","publicKey":"DCKEY"}
  ntm rs --data-dir /var/lib/ntm/rs --print-id              # on the RS host: {"id":"0xRSID",…}
  ntm dc --data-dir /var/lib/ntm/dc --advertise 192.0.2.2:7100 --relay 0xRSID@192.0.2.66:7200 \\
         --pool 198.18.1.0/24
  then terminals: ntm up --dc DCKEY@192.0.2.2:7100 --name phone
Several DCs: give each a disjoint --pool and the others as --peer 0xID@ADDR:PORT. The registry chain is
verified at every start; the DC refuses to start on one that does not verify.

On an EVM chain (docs/ledger.md): Node Transactions go to the NtmRegistry contract, the DC finds the other
DCs and claims its address blocks there, no --peer needed, and takes the RSs that announce themselves to it
there (ntm rs --ledger evm … --dc <this DC's ID>), no --accept-relay needed. Its ID is its chain account.
  ntm dc --data-dir DIR --advertise 192.0.2.2:7100 --ledger evm --chain-rpc http://10.0.0.1:8545 \
         --chain-contract 0xCONTRACT [--chain-deploy-block N]

${EXIT_HELP}`;

export async function runDc(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help', 'print-id']);
  if (has(p, 'help')) return void process.stdout.write(DC_HELP);
  const file = readConfigFile(one(p, 'config'));
  const ov = overrides(
      p,
      {
        listen: 'dc.listen',
        'data-dir': 'dc.dataDir',
        advertise: 'dc.advertise',
        peer: 'dc.peers',
        relay: 'dc.relays',
        'accept-relay': 'dc.acceptRelays',
        pool: 'dc.poolV4',
        pool6: 'dc.poolV6',
        keepalive: 'dc.keepaliveS',
        workers: 'dc.workers',
        'operator-listen': 'operator.dcListen',
        admission: 'operator.admission',
        ledger: 'dc.ledger',
        'chain-rpc': 'dc.chainRpc',
        'chain-contract': 'dc.chainContract',
        'chain-deploy-block': 'dc.chainDeployBlock',
      },
      ['print-id'],
  );
  const fileCfg = loadSection('dc', file, ov);
  const op = loadSection('operator', file, ov);
  const log = createLogger(loadSection('log', file).level);
  const missing = missingNodeFlags('dc');
  if (missing.length > 0 && !has(p, 'print-id')) log.warn('started without the DC\'s Node.js flags: it will spend more CPU on garbage collection than it need', { missing: missing.join(' ') });
  securedDataDir(fileCfg.dataDir, log);
  const identity = await loadOrCreateIdentity(resolveIn(fileCfg.dataDir, fileCfg.key));
  if (has(p, 'print-id')) return announce({ id: identity.idHex, publicKey: identity.publicKey.toString('hex') });
  // Several workers on the ports (issue 15): this process supervises them (cmd/dc-workers.ts) and serves no packets.
  const worker = workerOf();
  if (fileCfg.workers > 1 && !worker) {
    if (/:0$/.test(fileCfg.listen)) throw new ConfigError('dc.listen', 'needs a fixed port with dc.workers > 1 (every worker binds the same one)');
    return superviseDcWorkers({ count: fileCfg.workers, dataDir: fileCfg.dataDir, id: identity.idHex, publicKey: identity.publicKey.toString('hex'), log });
  }
  const dbPath = join(fileCfg.dataDir, 'dc.db');
  const db = openDb(dbPath);
  const { registry, cfg } = await openLedger(fileCfg, db, identity, log, !!worker);
  const operator = dcOperator({ dc: cfg, op, db, identity, log });
  const siblings = worker ? new IpcSiblings(worker.index, worker.count, Status.NOT_FOUND, process as unknown as ConstructorParameters<typeof IpcSiblings>[3]) : undefined;
  const binds = await openDcBinds(cfg, !!worker);
  const dc = await DcServer.start({ identity, db, registry, ...binds, config: cfg, log, ...(operator.admit ? { admit: operator.admit } : {}), ...(siblings ? { worker: siblings } : {}) }).catch((e: unknown) => {
    db.close();
    if (e instanceof IntegrityError)
      throw new IntegrityError(`${dbPath}: ${e.message}. The DC refuses to start on a registry that does not verify; restore dc.db from a backup.`);
    throw e;
  });
  if (worker) return serveAsWorker(dc, db, identity, log);
  // RS instances beside this DC, started and retired with the relayed load (paper §3.1; rsscale.max > 0).
  const dcAddr = cfg.advertise[0] ?? `127.0.0.1:${dc.port}`;
  const scaler = startRsAutoscaler({
    config: loadSection('rsscale', file, ov),
    dc,
    dcRef: `${identity.idHex}@${dcAddr}`,
    advertise: cfg.advertise.map((a) => parseEndpoint(a).address),
    dcDataDir: cfg.dataDir,
    log,
  });
  const ctl = await ControlServer.listen(join(cfg.dataDir, 'dc.sock'), (req) => {
    if (req.cmd === 'status') return { ...dc.status(), memory: processMemory(), autoscaler: scaler?.status() ?? null };
    return control(dc, identity, req);
  });
  const ops = await operator.start(dc);
  announce({ role: 'dc', ready: true, id: identity.idHex, publicKey: identity.publicKey.toString('hex'), port: dc.port, probePort: dc.probePort, operatorPort: ops?.port ?? null });
  onShutdown(log, async () => {
    await ops?.close();
    await ctl.close();
    await scaler?.stop();
    await dc.stop();
    db.close();
  });
}

/** The control socket's commands besides status (a lone DC's socket, or a worker's share of the supervisor's). */
function control(dc: DcServer, identity: Identity, req: Record<string, unknown>): unknown {
  // A terminal's own signed revocation (the household agent holds it for an appliance it unpairs): it goes to the
  // ledger like any Node Transaction, so every DC on an EVM ledger refuses the terminal too.
  if (req.cmd === 'revoke' && req.nt !== undefined) return { revoked: dc.revoke(...revocation(req, identity)) };
  // The operator's revocation: holds for an ID not registered yet too (it is refused when it comes).
  if (req.cmd === 'revoke' || req.cmd === 'reinstate') {
    const id = String(req.id ?? '').toLowerCase();
    if (!/^0x[0-9a-f]{40}$/.test(id)) throw new InputError('id must be 0x and 40 hex digits');
    if (req.cmd === 'reinstate') return dc.reinstate(id), { id, revoked: false };
    return { id, revoked: true, known: dc.revoke(id) };
  }
  throw new Error(`unknown command ${String(req.cmd)}`);
}

/**
 * One of several workers (cmd/dc-workers.ts): no operator API, no RS autoscaler, no control socket of its own (the
 * supervisor's asks it over IPC); it stops with its supervisor.
 */
function serveAsWorker(dc: DcServer, db: ReturnType<typeof openDb>, identity: Identity, log: ReturnType<typeof createLogger>): void {
  serveWorkerControl((req) => (req.cmd === 'status' ? { ...dc.status(), memory: processMemory(), pid: process.pid } : control(dc, identity, req)));
  announce({ role: 'dc', ready: true, id: identity.idHex, publicKey: identity.publicKey.toString('hex'), port: dc.port, probePort: dc.probePort, operatorPort: null, pid: process.pid });
  const stop = async (): Promise<void> => {
    await dc.stop();
    db.close();
  };
  onShutdown(log, stop);
  // The supervisor gone (killed): this worker goes too, committing what it holds.
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
}

/**
 * A control-socket revocation: a terminal's own signed revocation (its Node Transaction with rev = 1, naming this
 * DC), as the household agent holds it for an appliance it unpairs. It goes to the ledger like any Node Transaction.
 */
function revocation(req: Record<string, unknown>, dc: Identity): [string, Uint8Array] {
  const bytes = Buffer.from(String(req.nt ?? '').replace(/^0x/, ''), 'hex');
  const nt = NT.decode(bytes);
  if (nt instanceof NT.NodeTransactionDecodeError) throw new InputError(nt.message);
  if (!nt.revoked || !nt.dcId.equals(dc.id) || NT.check(nt) !== 'ok') throw new InputError('not a valid revocation naming this DC');
  return [formatId(nt.id), bytes];
}
