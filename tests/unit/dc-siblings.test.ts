// The DC workers' messages to each other (dc/siblings.ts, issue 15) over an in-memory supervisor that routes them as
// cmd/dc-workers.ts does: a direction's PEER_INFO_REQUEST reaches every other worker and the asker takes the route;
// refusals and silence; a NAT probe's mapping reaches every other worker (a turn's probes in one message).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { IpcSiblings, isSiblingMessage, SIBLING_TIMEOUT_MS, type PeerInfoResponse, type SiblingMessage } from '../../agent/src/dc/siblings.js';
import type { PeerInfoRequest } from '../../agent/src/dc/federation.js';
import { Peer } from '../../agent/src/protocol/peer.js';
import { Status } from '../../agent/src/protocol/control.js';
import type { Endpoint } from '../../agent/src/types/net.js';

/** N workers' IPC ports joined by a router that forwards as the supervisor does (asynchronously, as IPC is). */
function workers(n: number, down: ReadonlySet<number> = new Set()): IpcSiblings[] {
  const ports = Array.from({ length: n }, () => new EventEmitter());
  const route = (from: number, m: SiblingMessage): void => {
    if (m.ntmDc === 'answer') return void setImmediate(() => ports[m.to]!.emit('message', m));
    for (let k = 0; k < n; k++) if (k !== from && !down.has(k)) setImmediate(() => ports[k]!.emit('message', structuredClone(m)));
  };
  return ports.map((p, k) => new IpcSiblings(k, n, Status.NOT_FOUND, Object.assign(p, { send: (m: SiblingMessage) => (assert.ok(isSiblingMessage(m)), route(k, m)) })));
}

const endpoint: Endpoint = { family: 4, address: '192.0.2.7', port: 4500 };
const info = { id: Buffer.alloc(20, 1), publicKey: Buffer.alloc(33, 2), v4: '198.18.0.2', v6: 'fd4e:544d::2', name: 'a', observed: endpoint, nat: 'none' as const, locals: [endpoint], rsRtts: [] };
const ask: PeerInfoRequest = { type: Peer.PEER_INFO_REQUEST, txid: 7n, time: 1_700_000_000_000, tunnelId: 9n, target: { kind: 'name', name: 'b.ntm' }, requester: info };

function answer(m: PeerInfoRequest, status: number, route?: PeerInfoResponse['route']): PeerInfoResponse {
  return { type: Peer.PEER_INFO_RESPONSE, txid: m.txid, time: m.time, status, message: status === Status.OK ? '' : 'no', ...(route ? { route } : {}) };
}

test('a direction goes to the other workers; the one serving the target answers with the route', async () => {
  const w = workers(3);
  const route = { tunnelId: 9n, peerId: Buffer.alloc(20, 3), peerPublicKey: Buffer.alloc(33, 4), peerV4: '198.18.0.3', peerV6: 'fd4e:544d::3', peerName: 'b', kind: 'direct' as const, keepaliveS: 0, initiator: true, endpoints: [endpoint] };
  const seen: number[] = [];
  w[1]!.onPeerInfo = (m, reply) => (seen.push(1), reply(answer(m, Status.NOT_FOUND)));
  w[2]!.onPeerInfo = (m, reply) => {
    seen.push(2);
    assert.equal(m.target.kind, 'name');
    assert.deepEqual(Buffer.from(m.requester.id), info.id, 'the requester as the asking worker sent it');
    reply(answer(m, Status.OK, route));
  };
  const a = await w[0]!.peerInfo(ask);
  assert.equal(a?.status, Status.OK);
  assert.equal(a?.route?.peerV4, '198.18.0.3');
  assert.deepEqual(seen.sort(), [1, 2]);
  for (const x of w) x.close();
});

test('no worker serves the target: NOT_FOUND from all is no answer; a refusal is passed on', async () => {
  const w = workers(3);
  w[1]!.onPeerInfo = (m, reply) => reply(answer(m, Status.NOT_FOUND));
  w[2]!.onPeerInfo = (m, reply) => reply(answer(m, Status.NOT_FOUND));
  assert.equal(await w[0]!.peerInfo(ask), undefined);
  w[2]!.onPeerInfo = (m, reply) => reply(answer(m, Status.OFFLINE));
  assert.equal((await w[0]!.peerInfo(ask))?.status, Status.OFFLINE);
  for (const x of w) x.close();
});

test('a worker that does not answer: the asker gives up after the timeout with what it has', async () => {
  const w = workers(3, new Set([2]));
  w[1]!.onPeerInfo = (m, reply) => reply(answer(m, Status.NOT_FOUND));
  const t0 = performance.now();
  assert.equal(await w[0]!.peerInfo(ask), undefined);
  assert.ok(performance.now() - t0 >= SIBLING_TIMEOUT_MS - 50);
  for (const x of w) x.close();
});

test('a NAT probe seen by one worker reaches every other one', async () => {
  const w = workers(3);
  const got: Array<[number, bigint, string, string]> = [];
  w.forEach((x, k) => (x.onProbe = (txid, id, m) => got.push([k, txid, Buffer.from(id).toString('hex'), `${m.address}:${m.port}`])));
  w[1]!.probeSeen(42n, Buffer.alloc(20, 5), endpoint);
  w[1]!.probeSeen(43n, Buffer.alloc(20, 6), endpoint);
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(got.map((g) => `${g[0]}:${g[1]}`).sort(), ['0:42', '0:43', '2:42', '2:43'], 'both probes of the turn, to both others');
  for (const g of got) assert.deepEqual(g.slice(2), [`0${g[1] - 37n}`.repeat(20), '192.0.2.7:4500']);
  for (const x of w) x.close();
});

test('one worker alone asks nobody', async () => {
  const [only] = workers(1);
  assert.equal(await only!.peerInfo(ask), undefined);
  only!.close();
});
