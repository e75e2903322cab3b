// The packet layer of the data plane: parsing (RFC 791, RFC 8200), checksums (RFC 1071, RFC 1624), address
// rewrite with ICMP error translation (RFC 3022, RFC 5508), TCP MSS clamping (RFC 6691) and Packet Too Big
// messages (RFC 1191, RFC 4443). Every function works on caller-owned bytes and never throws on packet content.
export * from './checksum.js';
export * from './parse.js';
export * from './sums.js';
export * from './rewrite.js';
export * from './mss.js';
export * from './icmp.js';
