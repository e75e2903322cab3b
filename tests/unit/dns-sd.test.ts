// DNS-SD answers for the phones (agent/src/agent/dns-sd.ts; RFC 6763 over unicast as an RFC 8766 proxy would give
// them): a phone's view holds the services of the appliances it may reach, and the answers are checked by decoding
// the DNS messages the way a resolver would (RFC 1035 §4.1, compression pointers followed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { answerServiceQuery, type DnsSdView } from '../../agent/src/agent/dns-sd.js';
import { RR } from '../../agent/src/protocol/dns.js';

function query(name: string, type: number, id = 0x1234): Buffer {
  const labels = name.split('.').map((l) => Buffer.from(l, 'utf8'));
  const q = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
  const head = Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([head, q]);
}

interface Rec {
  name: string;
  type: number;
  ttl: number;
  data: string;
}

function readName(b: Buffer, off: number): [string, number] {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 20; hops++) {
    const len = b[off]!;
    if (len >= 0xc0) {
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | b[off + 1]!;
      continue;
    }
    if (len === 0) return [labels.join('.'), end < 0 ? off + 1 : end];
    labels.push(b.toString('utf8', off + 1, off + 1 + len));
    off += len + 1;
  }
  throw new Error('name loop');
}

function decode(b: Buffer): { id: number; rcode: number; tc: boolean; answers: Rec[]; additional: Rec[] } {
  let off = 12;
  [, off] = readName(b, off);
  off += 4;
  const rrs = (n: number): Rec[] => {
    const out: Rec[] = [];
    for (let i = 0; i < n; i++) {
      const [name, o] = readName(b, off);
      const type = b.readUInt16BE(o);
      const ttl = b.readUInt32BE(o + 4);
      const len = b.readUInt16BE(o + 8);
      const d = o + 10;
      let data = '';
      if (type === RR.A) data = [...b.subarray(d, d + 4)].join('.');
      else if (type === RR.AAAA) data = b.subarray(d, d + 16).toString('hex');
      else if (type === RR.PTR) data = readName(b, d)[0];
      else if (type === RR.SRV) data = `${b.readUInt16BE(d)} ${b.readUInt16BE(d + 2)} ${b.readUInt16BE(d + 4)} ${readName(b, d + 6)[0]}`;
      else if (type === RR.TXT) {
        const parts: string[] = [];
        for (let p = d; p < d + len; p += b[p]! + 1) parts.push(b.toString('utf8', p + 1, p + 1 + b[p]!));
        data = parts.join(' ');
      }
      out.push({ name, type, ttl, data });
      off = d + len;
    }
    return out;
  };
  const flags = b.readUInt16BE(2);
  const answers = rrs(b.readUInt16BE(6));
  rrs(b.readUInt16BE(8));
  const additional = rrs(b.readUInt16BE(10));
  return { id: b.readUInt16BE(0), rcode: flags & 0xf, tc: (flags & 0x0200) !== 0, answers, additional };
}

const LAMP = { type: '_http._tcp', instance: 'Living Room Lamp', port: 80, txt: { kind: 'lamp', path: '/' }, host: 'lamp.ntm', v4: '198.18.0.3', v6: 'fd4e:544d::3' };
const CAMERA = { type: '_rtsp._tcp', instance: 'Front Door v1.2', port: 554, txt: {}, host: 'camera.ntm', v4: '198.18.0.4', v6: 'fd4e:544d::4' };
const VIEW: DnsSdView = { domain: 'tanaka-home.ntm', services: [LAMP, CAMERA] };

test('browsing a type lists its instances, with SRV, TXT and the virtual addresses as additional records', () => {
  const r = decode(answerServiceQuery(query('_http._tcp.tanaka-home.ntm', RR.PTR), VIEW)!);
  assert.equal(r.id, 0x1234);
  assert.equal(r.rcode, 0);
  assert.deepEqual(r.answers.map((a) => [a.name, a.type, a.data]), [['_http._tcp.tanaka-home.ntm', RR.PTR, 'Living Room Lamp._http._tcp.tanaka-home.ntm']]);
  assert.deepEqual(
    r.additional.map((a) => [a.name, a.type, a.data]),
    [
      ['Living Room Lamp._http._tcp.tanaka-home.ntm', RR.SRV, '0 0 80 lamp.ntm'],
      ['Living Room Lamp._http._tcp.tanaka-home.ntm', RR.TXT, 'kind=lamp path=/'],
      ['lamp.ntm', RR.A, '198.18.0.3'],
      ['lamp.ntm', RR.AAAA, 'fd4e544d000000000000000000000003'],
    ],
  );
  assert.ok(r.answers.every((a) => a.ttl <= 10), 'short TTLs: a revoked grant must not live on in caches');
});

test('a view without the service answers as if nobody offered it; names outside the household are NXDOMAIN', () => {
  const none = decode(answerServiceQuery(query('_http._tcp.tanaka-home.ntm', RR.PTR), { ...VIEW, services: [CAMERA] })!);
  assert.equal(none.rcode, 0);
  assert.equal(none.answers.length, 0);
  assert.equal(none.additional.length, 0);
  const hidden = decode(answerServiceQuery(query('Living Room Lamp._http._tcp.tanaka-home.ntm', RR.SRV), { ...VIEW, services: [CAMERA] })!);
  const nobody = decode(answerServiceQuery(query('Nothing._http._tcp.tanaka-home.ntm', RR.SRV), VIEW)!);
  assert.equal(hidden.rcode, 3, 'a service the phone may not see does not exist for it');
  assert.equal(nobody.rcode, 3);
  assert.equal(decode(answerServiceQuery(query('_http._tcp.other-home.ntm', RR.PTR), VIEW)!).rcode, 3);
});

test('resolving an instance gives SRV and TXT (case-insensitive, dots inside the instance label kept)', () => {
  const srv = decode(answerServiceQuery(query('living room LAMP._HTTP._tcp.Tanaka-Home.ntm', RR.SRV), VIEW)!);
  assert.equal(srv.rcode, 0);
  assert.deepEqual(srv.answers.map((a) => a.data), ['0 0 80 lamp.ntm']);
  assert.deepEqual(srv.additional.map((a) => a.type), [RR.A, RR.AAAA]);
  // "Front Door v1.2" is one label: written with its dot inside (RFC 6763 §4.3).
  const b = answerServiceQuery(Buffer.concat([query('x', RR.TXT).subarray(0, 12), Buffer.from([15]), Buffer.from('Front Door v1.2'), Buffer.from([5]), Buffer.from('_rtsp'), Buffer.from([4]), Buffer.from('_tcp'), Buffer.from([11]), Buffer.from('tanaka-home'), Buffer.from([3]), Buffer.from('ntm'), Buffer.from([0, 0, 16, 0, 1])]), VIEW)!;
  const txt = decode(b);
  assert.equal(txt.rcode, 0);
  assert.deepEqual(txt.answers.map((a) => [a.type, a.data]), [[RR.TXT, '']], 'an empty TXT record is one empty string (RFC 6763 §6.1)');
});

test('service types and the browsing domain can be enumerated (RFC 6763 §9, §11)', () => {
  const types = decode(answerServiceQuery(query('_services._dns-sd._udp.tanaka-home.ntm', RR.PTR), VIEW)!);
  assert.deepEqual(types.answers.map((a) => a.data).sort(), ['_http._tcp.tanaka-home.ntm', '_rtsp._tcp.tanaka-home.ntm']);
  const domains = decode(answerServiceQuery(query('b._dns-sd._udp.ntm', RR.PTR), VIEW)!);
  assert.deepEqual(domains.answers.map((a) => a.data), ['tanaka-home.ntm']);
});

test('a message that is not one standard query gets no answer', () => {
  assert.equal(answerServiceQuery(Buffer.from([1, 2, 3]), VIEW), undefined);
  const response = query('_http._tcp.tanaka-home.ntm', RR.PTR);
  response[2] = 0x81;
  assert.equal(answerServiceQuery(response, VIEW), undefined);
});

test('many services: the answer stays within 1232 bytes and says it was truncated', () => {
  const many = Array.from({ length: 60 }, (_, i) => ({ ...LAMP, instance: `Lamp number ${i} in the long hallway` }));
  const b = answerServiceQuery(query('_http._tcp.tanaka-home.ntm', RR.PTR), { ...VIEW, services: many })!;
  assert.ok(b.length <= 1232, String(b.length));
  const r = decode(b);
  assert.equal(r.tc, true);
  assert.ok(r.answers.length > 10 && r.answers.length < 60);
});
