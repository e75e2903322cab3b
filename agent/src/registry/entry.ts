// What every registry backend checks of an entry before staging it: the ID's form (the DC passes canonical IDs; any
// other is a bug in the caller, so it throws rather than being counted).
import type { RegistryEntry } from '../types/registry.js';

const ID = /^0x[0-9a-f]{40}$/;

export function checkId(id: string): void {
  if (!ID.test(id)) throw new RangeError(`registry entry ID must be 0x + 40 lowercase hex digits, got ${JSON.stringify(id)}`);
}

/** The revocation flag of a 148-byte Node Transaction (docs/protocol.md §2: byte 74); false for anything else. */
export function ntRevoked(bytes: Uint8Array | undefined): boolean {
  return bytes?.length === 148 && bytes[74] === 1;
}

export function checkEntry(e: RegistryEntry): void {
  checkId(e.id);
  if (e.kind !== 'node' && e.kind !== 'dc') throw new RangeError(`registry entry kind must be 'node' or 'dc', got ${String(e.kind)}`);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
