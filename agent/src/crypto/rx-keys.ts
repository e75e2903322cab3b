// The receive keys of DATA keypairs, lent to the native socket's opening thread (agent/native/rxopen.c, issue 15): it
// opens received DATA datagrams (RFC 8439 ChaCha20-Poly1305) on a thread of its own while JavaScript handles the
// burst before, and the keypair takes its verdict only when the generation it got here matches (crypto/session.ts).
// Without the addon (or with NTM_NO_RX_THREAD=1) nothing is lent and every packet is opened in JavaScript.
//
// A key lent is wiped from the table when its keypair is destroyed, or at the latest when the keypair is collected.
import { nativeAddon } from '../native.js';

const native = process.env.NTM_NO_RX_THREAD === '1' ? null : nativeAddon();
// An addon built before rxopen.c (a stale build: `npm run build:native` makes it current) has no table to lend to.
const addon = native && typeof native.rxKeyAdd === 'function' ? native : null;

const lent = new FinalizationRegistry<{ index: number; gen: number }>(({ index, gen }) => addon?.rxKeyRemove(index, gen));

/** Lends `key` for receiver index `index`; the generation (0 when not lent: JavaScript opens that keypair's packets). */
export function lendReceiveKey(owner: object, index: number, key: Uint8Array): number {
  if (!addon) return 0;
  const gen = addon.rxKeyAdd(index, key);
  if (gen !== 0) lent.register(owner, { index, gen }, owner);
  return gen;
}

/** Takes the key back (the keypair is destroyed). */
export function returnReceiveKey(owner: object, index: number, gen: number): void {
  if (!addon || gen === 0) return;
  addon.rxKeyRemove(index, gen);
  lent.unregister(owner);
}

/** Whether keys are lent at all (the opening thread has something to do). */
export function receiveKeysLent(): boolean {
  return addon !== null;
}
