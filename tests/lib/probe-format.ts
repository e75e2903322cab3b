// The JSON the UDP echo server and prober exchange and print; no imports, so the runnable tools stay light.

/** What udp-echo.js sends back for each datagram. */
export interface EchoReply {
  /** The source address and port the server saw, i.e. the sender's mapping after any NAT. */
  observed: { address: string; port: number; family: 'IPv4' | 'IPv6' };
  /** The datagram it received, base64. */
  payload: string;
  /** Datagrams the server has received since it started (duplicates count twice). */
  received: number;
}

export interface ProbeTargetResult {
  target: string;
  sent: number;
  received: number;
  rttMs: number[];
  medianMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  /** Distinct "address:port" mappings the target reported. */
  observed: string[];
  /** The highest datagram count the echo server reported (see EchoReply.received). */
  echoReceived: number;
}

/** What udp-probe.js prints (one JSON object on stdout). */
export interface ProbeReport {
  local: { address: string; port: number };
  results: ProbeTargetResult[];
}

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] ?? null) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}
