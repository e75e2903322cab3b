// Wiring of the operator's side of each role (operator/): the DC's admission by enrollment key, its operator API, and
// every role's /metrics endpoint. Here, in cmd/, because only entry points may know both the DC's class and the
// operator module; the operator module itself sees the DC through OperatorDc.
import { Counters, type Logger } from '../util/log.js';
import type { Db } from '../store/db.js';
import type { Identity } from '../protocol/identity.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import type { SectionConfig } from '../config/schema.js';
import type { DcServer } from '../dc/server.js';
import type { RsServer } from '../rs/server.js';
import { EnrollmentKeys } from '../operator/enrollment-keys.js';
import { Metrics, agentMetrics, dcMetrics, rsMetrics, type StatusSource } from '../operator/metrics.js';
import { OperatorServer, loadOrCreateToken, type OperatorDc } from '../operator/server.js';
import { resolveIn } from './common.js';
import type { Admission } from '../dc/server.js';
import type { RefusalReason as KeyRefusal } from '../operator/enrollment-keys.js';

/** An enrollment key's verdict as the terminal is told it (docs/protocol.md §3.2). */
const KEY_REFUSALS: Record<KeyRefusal, Admission> = {
  'no-key': 'not-admitted',
  'unknown-key': 'key-unknown',
  revoked: 'key-revoked',
  expired: 'key-expired',
  'used-up': 'key-used-up',
};

export interface DcOperator {
  /** For DcServerOptions.admit: set only when operator.admission is "key". */
  readonly admit?: (id: string, token: Uint8Array) => Admission;
  /** Starts the operator endpoint once the DC runs (null when operator.dcListen is ""). */
  start(dc: DcServer): Promise<OperatorServer | null>;
}

export function dcOperator(o: { readonly dc: SectionConfig<'dc'>; readonly op: SectionConfig<'operator'>; readonly db: Db; readonly identity: Identity; readonly log: Logger }): DcOperator {
  const keys = new EnrollmentKeys(o.db);
  const refusals = new Counters();
  const log = o.log.child({ part: 'admission' });
  const admit =
    o.op.admission === 'key'
      ? (id: string, token: Uint8Array): Admission => {
          const v = keys.admit(id, token);
          // The key's id names it in the log; its secret never appears.
          if (v.ok) {
            if (!v.again) log.info('terminal admitted by enrollment key', { id, key: v.keyId });
            return true;
          }
          refusals.inc(v.reason);
          log.warn('registration refused: enrollment key not valid', { id, reason: v.reason, ...(v.keyId ? { key: v.keyId } : {}) });
          return KEY_REFUSALS[v.reason];
        }
      : undefined;
  return {
    ...(admit ? { admit } : {}),
    async start(dc) {
      if (!o.op.dcListen) return null;
      const metrics = dcMetrics(new Metrics().source('dc', () => ({ ...dc.status(), extra: { refusals: refusals.toJSON() } })), 'dc');
      const view: OperatorDc = {
        publicKey: o.identity.publicKey,
        endpoints: () => o.dc.advertise.map(parseEndpoint),
        terminals: () =>
          [...dc.terminals.byId.values()].map((r) => ({
            id: r.id,
            name: r.name,
            v4: r.v4,
            v6: r.v6,
            lastRegistration: r.lastReqTime,
            lastSeen: r.lastSeen,
            online: dc.isOnline(r.id),
            revoked: r.revoked,
          })),
        revoke: (id) => dc.revoke(id),
      };
      const token = loadOrCreateToken(resolveIn(o.dc.dataDir, o.op.tokenFile));
      return OperatorServer.listen({ listen: o.op.dcListen, metrics, api: { dc: view, keys, token }, log: o.log });
    },
  };
}

/** /metrics of a Relay Server (null when operator.rsListen is ""). */
export function rsOperator(rs: RsServer, op: SectionConfig<'operator'>, log: Logger): Promise<OperatorServer | null> {
  if (!op.rsListen) return Promise.resolve(null);
  return OperatorServer.listen({ listen: op.rsListen, metrics: rsMetrics(new Metrics().source('rs', () => rs.status()), 'rs'), log });
}

/** /metrics of the household agent, on the ISP's side of the vCPE (null when operator.agentListen is ""). */
export function agentOperator(agent: StatusSource, op: SectionConfig<'operator'>, log: Logger): Promise<OperatorServer | null> {
  if (!op.agentListen) return Promise.resolve(null);
  return OperatorServer.listen({ listen: op.agentListen, metrics: agentMetrics(new Metrics(), agent), log });
}
