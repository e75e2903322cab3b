// Which resolv.conf nameserver `ntm up` forwards to (agent/src/terminal/resolver-config.ts): never itself.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDnsServer, upstreamFromResolvConf } from '../../agent/src/terminal/resolver-config.js';
import { InputError } from '../../agent/src/types/errors.js';

const at = (address: string, port = 53) => ({ family: address.includes(':') ? (6 as const) : (4 as const), address, port });

void describe('upstream resolver from resolv.conf', () => {
  test('skips our own listener and loopback servers that would be us; takes the next', () => {
    const conf = '# generated\nsearch lan\nnameserver 127.0.0.1\nnameserver fe80::1%eth0\nnameserver 192.168.1.1\n';
    assert.deepEqual(upstreamFromResolvConf(conf, at('127.0.0.1')), at('fe80::1'));
    assert.deepEqual(upstreamFromResolvConf('nameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.1\n', at('0.0.0.0')), at('10.0.0.1'));
    assert.deepEqual(upstreamFromResolvConf('nameserver ::1\nnameserver 10.0.0.1\n', at('::')), at('10.0.0.1'));
  });
  test('a loopback resolver at another address or port than ours is not us', () => {
    assert.deepEqual(upstreamFromResolvConf('nameserver 127.0.0.53\n', at('127.0.0.1')), at('127.0.0.53'));
    assert.deepEqual(upstreamFromResolvConf('nameserver 127.0.0.1\n', at('127.0.0.1', 5353)), at('127.0.0.1'));
  });
  test('none but us: no upstream', () => {
    assert.equal(upstreamFromResolvConf('nameserver 127.0.0.1\n', at('127.0.0.1')), undefined);
    assert.equal(upstreamFromResolvConf('', at('127.0.0.1')), undefined);
  });
  test('dnsUpstream accepts ADDR, ADDR:PORT, [V6]:PORT and refuses the rest', () => {
    assert.deepEqual(parseDnsServer('9.9.9.9'), at('9.9.9.9'));
    assert.deepEqual(parseDnsServer('2001:db8::53'), at('2001:db8::53'));
    assert.deepEqual(parseDnsServer('[2001:db8::53]:5353'), at('2001:db8::53', 5353));
    assert.throws(() => parseDnsServer('resolver.example'), InputError);
  });
});
