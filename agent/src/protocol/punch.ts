// PUNCH (docs/protocol.md §3, type 0x07; paper §2.3: CN behind a NAT hole-punches): a packet a tunnel end sends to
// each candidate address of its peer to open its own NAT towards it, and that prods a connecting initiator to resend
// its request. Not authenticated: what it can trigger is itself authenticated (the Noise handshake).
//
//   0x07 ‖ 0x00 ×3 ‖ tunnel id (8) ‖ sender ID (20)          = 32 bytes
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const PUNCH = 0x07;
export const PUNCH_LENGTH = 32;

export function encodePunch(tunnelId: bigint, senderId: Uint8Array): Buffer {
  return new Writer(PUNCH_LENGTH).u8(PUNCH).zeros(3).u64(tunnelId).fixed(senderId, 20).finish();
}

export function decodePunch(buf: Buffer): Decoded<{ tunnelId: bigint; senderId: Buffer }> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== PUNCH) throw new WireError('not a punch');
    r.bytes(3);
    const tunnelId = r.u64();
    const senderId = r.bytes(20);
    r.end();
    return { tunnelId, senderId };
  });
}
