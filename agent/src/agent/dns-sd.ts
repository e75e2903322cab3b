// DNS-SD for the household's phones (RFC 6763 records, served over unicast in the manner of an RFC 8766 discovery
// proxy): the agent learns the appliances' services by mDNS on the LAN, and answers a phone's browse and resolve
// questions under `<household>.ntm` with the services of exactly the appliances that phone has been granted, on the
// granted ports, each pointing at the appliance's `NAME.ntm` and virtual addresses. Nobody else answers: the phone's
// resolver carries the question through its DC's sealed channel (the DC knows who asks), and this module decides from
// the grants in force at that moment, so a revoked grant hides the service at the next question.
//
// Names that exist for another phone but not for this one get the same answer as names that exist for nobody
// (NXDOMAIN, or an empty browse), so a phone learns nothing of what it may not reach.
import { buildResponse, encodeName, foldLabel, parseQuery, Rcode, RR, utf8Label, type DnsRecord } from '../protocol/dns.js';

/** One service a phone may see: an appliance's mDNS service, reachable at its virtual addresses. */
export interface VisibleService {
  /** "_http._tcp" */
  readonly type: string;
  /** The instance name the appliance announces (UTF-8), e.g. "Living Room Lamp". */
  readonly instance: string;
  readonly port: number;
  readonly txt: Readonly<Record<string, string>>;
  /** The appliance's name for phones, "lamp.ntm". */
  readonly host: string;
  readonly v4: string;
  readonly v6: string;
}

/** What one phone may see, built by the runtime from the grants in force when the question arrives. */
export interface DnsSdView {
  /** The household's browse domain, "tanaka-home.ntm". */
  readonly domain: string;
  readonly services: readonly VisibleService[];
}

/** Short: a revoked grant must not live on in a resolver's cache. */
const TTL = 10;

const labelsOf = (name: string): string[] => name.split('.').map(foldLabel);

function endsWith(labels: readonly string[], suffix: readonly string[]): boolean {
  if (labels.length < suffix.length) return false;
  const off = labels.length - suffix.length;
  return suffix.every((l, i) => labels[off + i] === l);
}

function txtStrings(txt: Readonly<Record<string, string>>): string[] {
  // RFC 6763 §6.4: "key=value"; a key without a value is the key alone.
  return Object.entries(txt).map(([k, v]) => (v === '' ? k : `${k}=${v}`));
}

/**
 * The answer (a DNS response message) to a DNS-SD question from a phone whose view is `view`; undefined when the
 * query is not a DNS message with one question.
 */
export function answerServiceQuery(query: Uint8Array, view: DnsSdView): Buffer | undefined {
  const q = parseQuery(query);
  if (!q) return undefined;
  const reply = (rcode: number, an: readonly DnsRecord[] = [], ar: readonly DnsRecord[] = []) => buildResponse(query, q, rcode, an, ar);
  const domain = labelsOf(view.domain);
  const wants = (t: number) => q.type === t || q.type === RR.ANY;

  // Browsing-domain enumeration (RFC 6763 §11): "b", "db" and "lb" under the parent domain name this household.
  if (q.labels.length === 4 && ['b', 'db', 'lb'].includes(q.labels[0]!) && endsWith(q.labels, ['_dns-sd', '_udp', 'ntm'])) {
    return reply(Rcode.NOERROR, wants(RR.PTR) ? [{ name: null, type: RR.PTR, ttl: TTL, target: domain }] : []);
  }
  if (!endsWith(q.labels, domain)) return reply(Rcode.NXDOMAIN);
  const rel = q.labels.slice(0, q.labels.length - domain.length);
  if (rel.length === 0) return reply(Rcode.NOERROR);

  const typeLabels = (s: VisibleService) => labelsOf(s.type);
  const instanceName = (s: VisibleService) => [utf8Label(s.instance), ...typeLabels(s), ...domain];
  const srv = (s: VisibleService): DnsRecord => ({ name: instanceName(s), type: RR.SRV, ttl: TTL, priority: 0, weight: 0, port: s.port, target: labelsOf(s.host) });
  const txt = (s: VisibleService): DnsRecord => ({ name: instanceName(s), type: RR.TXT, ttl: TTL, strings: txtStrings(s.txt) });
  const addrs = (s: VisibleService): DnsRecord[] => [
    { name: labelsOf(s.host), type: RR.A, ttl: TTL, address: s.v4 },
    { name: labelsOf(s.host), type: RR.AAAA, ttl: TTL, address: s.v6 },
  ];
  // Only services whose names can be written at all (an instance name over 63 octets cannot).
  const services = view.services.filter((s) => encodeName(instanceName(s)) !== undefined);

  // Service-type enumeration (RFC 6763 §9).
  if (rel.join('.') === '_services._dns-sd._udp') {
    const types = [...new Set(services.map((s) => s.type))];
    return reply(Rcode.NOERROR, wants(RR.PTR) ? types.map((t) => ({ name: null, type: RR.PTR, ttl: TTL, target: [...labelsOf(t), ...domain] })) : []);
  }
  // Browse (RFC 6763 §4): PTR to every instance of the type; SRV, TXT and addresses as additional records (§12.1).
  if (rel.length === 2 && rel[0]!.startsWith('_') && (rel[1] === '_tcp' || rel[1] === '_udp')) {
    if (!wants(RR.PTR)) return reply(Rcode.NOERROR);
    const of = services.filter((s) => typeLabels(s).join('.') === rel.join('.'));
    return reply(
      Rcode.NOERROR,
      of.map((s) => ({ name: null, type: RR.PTR, ttl: TTL, target: instanceName(s) })),
      of.flatMap((s) => [srv(s), txt(s), ...addrs(s)]),
    );
  }
  // Resolve one instance (RFC 6763 §5): SRV and TXT, the target's addresses as additional records (§12.2).
  if (rel.length === 3) {
    const s = services.find((x) => instanceName(x).slice(0, rel.length).every((l, i) => foldLabel(l) === rel[i]));
    if (!s) return reply(Rcode.NXDOMAIN);
    const an = [...(wants(RR.SRV) ? [srv(s)] : []), ...(wants(RR.TXT) ? [txt(s)] : [])];
    return reply(Rcode.NOERROR, an.map((r) => ({ ...r, name: null })), wants(RR.SRV) ? addrs(s) : []);
  }
  return reply(Rcode.NXDOMAIN);
}
