// A monotonic clock (performance.now(), ms) read once per JavaScript job (issue 15). The data path asks the time for
// every packet it seals or opens (the keypair's age limits, the tunnel's last receive), and the native socket hands
// JavaScript a whole burst of packets in one job: reading the clock once for the burst instead of twice per packet
// saves a clock_gettime each (about 1% of the agent's CPU at 2 Gbit/s). Within one job the time stands still; the
// next job reads it afresh (a job lasts microseconds to a few milliseconds, against timeouts of seconds).

let now = -1;
const forget = (): void => {
  now = -1;
};

/** performance.now() as it was when the current job first asked. */
export function jobNow(): number {
  if (now < 0) {
    now = performance.now();
    queueMicrotask(forget);
  }
  return now;
}
