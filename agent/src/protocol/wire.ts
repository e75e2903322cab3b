// Byte reader and writer for the signalling messages of docs/protocol.md (big-endian, bounds-checked).
// Readers throw WireError on truncation; each message's decode() catches it and returns a result value.

export class WireError extends Error {
  override readonly name = 'WireError';
}

export class Reader {
  private off: number;
  constructor(
    /** Borrowed: the reader never copies; subarrays it returns alias this buffer. */
    readonly buf: Buffer,
    offset = 0,
  ) {
    this.off = offset;
  }
  get offset(): number {
    return this.off;
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new WireError(`truncated: need ${n} bytes at ${this.off}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }
  /** A uint64 that must fit a JS number exactly (timestamps in ms). */
  u64n(): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireError('integer too large');
    return Number(v);
  }
  /** Borrowed view of the next n bytes. */
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  /** Bytes prefixed with a u8 length. */
  vbytes8(): Buffer {
    return this.bytes(this.u8());
  }
  /** Bytes prefixed with a u16 length. */
  vbytes16(): Buffer {
    return this.bytes(this.u16());
  }
  /** UTF-8 text prefixed with a u8 length; rejects invalid UTF-8. */
  str8(): string {
    const b = this.vbytes8();
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== b.length || s.includes('\uFFFD')) throw new WireError('invalid UTF-8');
    return s;
  }
  rest(): Buffer {
    const v = this.buf.subarray(this.off);
    this.off = this.buf.length;
    return v;
  }
  end(): void {
    if (this.off !== this.buf.length) throw new WireError(`${this.buf.length - this.off} trailing bytes`);
  }
}

export class Writer {
  private buf: Buffer;
  private off = 0;
  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }
  private room(n: number): void {
    if (this.off + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.off + n));
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }
  get length(): number {
    return this.off;
  }
  u8(v: number): this {
    this.room(1);
    this.buf[this.off++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16BE(v, this.off);
    this.off += 2;
    return this;
  }
  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.off);
    this.off += 4;
    return this;
  }
  u64(v: bigint | number): this {
    this.room(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.off);
    this.off += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
    return this;
  }
  /** Exactly n bytes: b must have that length. */
  fixed(b: Uint8Array, n: number): this {
    if (b.length !== n) throw new WireError(`field needs ${n} bytes, got ${b.length}`);
    return this.bytes(b);
  }
  vbytes8(b: Uint8Array): this {
    if (b.length > 255) throw new WireError('field longer than 255 bytes');
    return this.u8(b.length).bytes(b);
  }
  vbytes16(b: Uint8Array): this {
    if (b.length > 65535) throw new WireError('field longer than 65535 bytes');
    return this.u16(b.length).bytes(b);
  }
  str8(s: string): this {
    return this.vbytes8(Buffer.from(s, 'utf8'));
  }
  zeros(n: number): this {
    this.room(n);
    this.buf.fill(0, this.off, this.off + n);
    this.off += n;
    return this;
  }
  /** The written bytes (a view of the internal buffer; the writer must not be used afterwards). */
  finish(): Buffer {
    return this.buf.subarray(0, this.off);
  }
}

/** Result of decoding untrusted bytes: a value, or the reason it was dropped. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Runs a decoder over untrusted bytes, turning every WireError (and only those) into a drop reason. */
export function decodeWith<T>(fn: () => T): Decoded<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof WireError) return { ok: false, reason: e.message };
    if (e instanceof RangeError) return { ok: false, reason: `out of range: ${e.message}` };
    throw e;
  }
}
