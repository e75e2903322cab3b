// `ntm enroll <token or link>`: a phone joins a household. It checks the token, creates the phone's identity, registers
// once with the household's DC presenting the one-time token (the DC admits it and the token is spent), and saves the
// DC reference so `ntm up` needs no other argument.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { securePrivateDir } from '../store/private-dir.js';
import { decodeEnrollment } from '../agent/enrollment.js';
import { DataError, RefusedError, RegistrationRefusedError, UnavailableError } from '../types/errors.js';
import { Exit, EXIT_HELP } from './exit.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { TerminalHost } from '../terminal/host.js';
import { DataEngine } from '../dataplane/engine.js';
import { PASS_THROUGH } from '../dataplane/policy.js';
import { readAddresses } from '../terminal/netwatch.js';
import type { Endpoint } from '../types/net.js';
import { parseArgs, one, has } from './args.js';
import { announce, formatDcRef, loadOrCreateIdentity } from './common.js';

export const ENROLL_HELP = `ntm enroll — join a household with the one-time token (or link) its web page shows

  ntm enroll [--data-dir DIR] [--name NAME] [--json] TOKEN-OR-LINK

Creates this terminal's identity (if it has none), registers once with the household's DC using
the token (which it spends), and saves the DC in DIR/enrollment.json; then \`ntm up --data-dir DIR\`
starts the terminal without further arguments. An ISP's enrollment key (\`ntm keys create\`) is
used the same way. Prints one JSON line: {enrolled, household, id, v4, v6, dc} (always JSON: --json is
accepted for symmetry with the other commands).

${EXIT_HELP}`;

export const ENROLLMENT_FILE = 'enrollment.json';

export async function runEnroll(argv: readonly string[]): Promise<void> {
  // --json is a flag (it takes no value): without it here, `--json TOKEN` would read the token as its value.
  const p = parseArgs(argv, ['help', 'json']);
  if (has(p, 'help') || p.positional.length !== 1) {
    process.stdout.write(ENROLL_HELP);
    if (!has(p, 'help')) process.exitCode = Exit.USAGE;
    return;
  }
  const d = decodeEnrollment(p.positional[0]);
  // An expired token is a refusal (77: ask for a new one); a mangled one is bad data (65).
  if (!d.ok && d.reason === 'expired') throw new RefusedError(`this enrollment token or key cannot be used: ${d.message}`);
  if (!d.ok) throw new DataError(`this is not a valid enrollment token: ${d.message}`);
  const t = d.token;
  const dir = one(p, 'data-dir') ?? '/var/lib/ntm/terminal';
  securePrivateDir(dir);
  const identity = await loadOrCreateIdentity(join(dir, 'terminal.key'));
  const addrs = await readAddresses();
  const dcPub = Buffer.from(t.dcPublicKey, 'hex');
  let lastErr: unknown;
  // Try the DC's addresses in order (IPv6 and IPv4): a phone on an IPv4-only network uses the IPv4 one.
  for (const ep of t.dcEndpoints) {
    const bind = await UdpBind.open({ listen: '[::]:0' });
    const locals = (): Endpoint[] => addrs.map((a) => ({ family: a.family, address: a.address, port: bind.port }));
    const host = new TerminalHost({ bind, locals, retry: { initialMs: 500, maxMs: 2000, deadlineMs: 6000 } });
    // The engine reads the socket (registration answers are handed to the host); no packet queues are opened.
    new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH });
    const node = host.addNode(identity, { id: Buffer.from(t.dcId.slice(2), 'hex'), publicKey: dcPub, endpoint: ep }, { name: one(p, 'name') ?? '', token: t.secret });
    try {
      const r = await node.register();
      await node.deregister();
      const ref = formatDcRef(dcPub, ep);
      writeFileSync(join(dir, ENROLLMENT_FILE), JSON.stringify({ dc: ref, household: t.household, enrolledAt: new Date().toISOString() }, null, 2) + '\n', { mode: 0o600 });
      announce({ enrolled: true, household: t.household, id: identity.idHex, v4: r.v4, v6: r.v6, dc: ref });
      await host.close();
      return;
    } catch (e) {
      lastErr = e;
      await host.close();
      // The DC said no (an authenticated refusal, docs/protocol.md §3.2): its other addresses would say the same.
      if (e instanceof RegistrationRefusedError) throw e;
    }
  }
  throw new UnavailableError(`the DC did not answer (${(lastErr as Error)?.message ?? 'no address'}): check the network, or ask whoever runs it`);
}
