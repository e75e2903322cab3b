// Byte-order helpers for the per-packet paths (no Buffer view, no allocation). No dependencies.

/** Big-endian uint32 at `off` (the caller checked the length). */
export const be32 = (b: Uint8Array, off: number): number => ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
