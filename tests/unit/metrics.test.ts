// The metric names an operator builds dashboards on: Prometheus conventions (counters end in _total, units in the
// name), and every metric the example Grafana dashboard (docs/grafana-dashboard.json) queries is one the roles export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Metrics, agentMetrics, dcMetrics, rsMetrics } from '../../agent/src/operator/metrics.js';
import { parseMetrics } from '../lib/metrics.js';

const DASHBOARD = resolve(import.meta.dirname, '..', '..', '..', 'docs/grafana-dashboard.json');

/** name → TYPE, from a whole exposition. */
function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

test('DC, RS and agent metrics follow the naming conventions and turn status counters into samples', async () => {
  const dcStatus = { terminals: 3, online: 2, counts: { directions: 5, rx: 40, 'reg-retransmission': 1, 'registrations-new': 3, 'routes-relay': 1 }, drops: { 'reg-mac': 2 }, extra: { refusals: { revoked: 1 } } };
  const rsStatus = { tunnels: [{}, {}], load: 0.0002, counts: { relayed: 10, 'relayed-bytes': 12000 }, drops: { 'relay-quota': 1 } };
  const terminal = { counts: { 'tunnels-direct': 2, 'tunnels-relayed': 1 }, drops: { 'handshake-mac': 4, length: 1 }, tunnels: [{ state: 'up', path: 'direct', txBytes: 100, rxBytes: 50 }] };
  const dc = dcMetrics(new Metrics().source('dc', () => dcStatus), 'dc');
  const rs = rsMetrics(new Metrics().source('rs', () => rsStatus), 'rs');
  const agent = agentMetrics(new Metrics(), { status: () => ({ dc: dcStatus, rs: rsStatus, terminal, dataplane: { counters: { 'icmp-unreachable-sent': 2 } } }) });
  const texts = await Promise.all([dc.scrape(), rs.scrape(), agent.scrape()]);
  const all = new Map(texts.flatMap((t) => [...types(t)]));
  for (const [name, type] of all) {
    if (!name.startsWith('ntm_')) continue;
    assert.match(name, /^ntm_(dc|rs|terminal|agent)_[a-z_]+$/, name);
    if (type === 'counter') assert.match(name, /_total$/, `${name}: a counter ends in _total`);
    else assert.doesNotMatch(name, /_total$/, `${name}: only counters end in _total`);
    if (/bytes/.test(name)) assert.match(name, /_bytes(_total)?$/, `${name}: the unit ends the name`);
  }
  const a = parseMetrics(texts[2]!);
  assert.equal(a.get('ntm_dc_directions_total'), 5);
  assert.equal(a.get('ntm_dc_registrations_total{kind="first"}'), 3);
  assert.equal(a.get('ntm_dc_routes_total{path="relay"}'), 1);
  assert.equal(a.get('ntm_dc_drops_total{reason="reg-mac"}'), 2);
  assert.equal(a.get('ntm_rs_relayed_bytes_total'), 12000);
  assert.equal(a.get('ntm_rs_tunnels'), 2);
  assert.equal(a.get('ntm_terminal_tunnels_established_total{path="relayed"}'), 1);
  assert.equal(a.get('ntm_terminal_handshake_failures_total{reason="mac"}'), 4);
  assert.equal(a.get('ntm_terminal_drops_total{reason="length"}'), 1, 'handshake failures are not counted twice');
  assert.equal(a.get('ntm_terminal_tunnels{path="direct"}'), 1);
  assert.equal(a.get('ntm_agent_dataplane_events_total{event="icmp-unreachable-sent"}'), 2);
  assert.ok((a.get('process_resident_memory_bytes') ?? 0) > 0);
  // A later scrape follows the role's counter, it does not add to the last one.
  dcStatus.counts.directions = 7;
  assert.equal(parseMetrics(await dc.scrape()).get('ntm_dc_directions_total'), 7);

  const dashboard = readFileSync(DASHBOARD, 'utf8');
  const queried = new Set([...dashboard.matchAll(/\b((?:ntm|process|nodejs)_[a-z_]+)/g)].map((m) => m[1]!));
  assert.ok(queried.size >= 10, [...queried].join(' '));
  for (const name of queried) assert.ok(all.has(name), `the dashboard queries ${name}, which no role exports`);
});
