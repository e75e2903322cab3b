// Long-lived small buffers, kept out of Node's shared Buffer pool. Node cuts every small Buffer (Buffer.from,
// allocUnsafe, concat: under 4 KiB) from shared 8 KiB slabs, so a record that keeps a 32-byte slice keeps the whole
// slab, and every short-lived packet buffer cut beside it, alive. The DC keeps a handful of such slices per terminal
// (ID, public key, Node Transaction, keys, the cached registration answer): with 100,000 terminals that pinned some
// 160 MiB of dead packet bytes (dc_capacity benchmark, issue 6 item 3). keep() copies into slabs only long-lived
// bytes share. No dependencies.

const SLAB = 64 * 1024;
/** Larger copies get an ArrayBuffer of their own. */
const OWN = 2048;

let slab = Buffer.allocUnsafeSlow(SLAB);
let used = 0;

/** A copy of `src` for keeping (its own bytes; changing one never changes the other). */
export function keep(src: Uint8Array): Buffer {
  const b = keepRoom(src.length);
  b.set(src);
  return b;
}

/** Room for `n` bytes to keep, uninitialised: for the caller to write once (instead of building them and copying). */
export function keepRoom(n: number): Buffer {
  if (n > OWN) return Buffer.allocUnsafeSlow(n);
  if (used + n > SLAB) {
    slab = Buffer.allocUnsafeSlow(SLAB);
    used = 0;
  }
  const b = slab.subarray(used, used + n);
  // 8-byte aligned, as Node's own pool keeps them.
  used += (n + 7) & ~7;
  return b;
}
