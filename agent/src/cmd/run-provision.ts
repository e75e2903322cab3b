// `ntm provision`: an ISP's bulk provisioning of household agents. From a CSV of subscribers (RFC 4180, util/csv.ts)
// it writes, per subscriber, the agent's configuration (agent.json), the agent's identity (dc.key: the ID its DC and its
// household's phones know, so the ISP has it before the VM ever boots), its one-time web setup code (printed on the
// letter the household receives; the agent accepts it once, to set the owner's password), the letter itself, and a
// manifest for the ISP's systems. Re-running keeps what exists (idempotent): a subscriber's setup code and identity
// never change behind a letter already posted. A bad row is reported with its line and the others go on.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataError, InputError } from '../types/errors.js';
import { loadSection } from '../config/schema.js';
import { Identity } from '../protocol/identity.js';
import { parseCsv, csvField } from '../util/csv.js';
import { parseArgs, one, has } from './args.js';
import { EXIT_HELP, Exit } from './exit.js';
import { generateSetupCode } from '../../../web-ui/server/auth.js';
import { writeSeedIso, type SeedLan } from './seed-iso.js';
import { normalCidr, normalMac } from './seed-network.js';

export const PROVISION_HELP = `ntm provision — bulk provisioning of household agents (for the ISP)

  ntm provision --subscribers subscribers.csv --out DIR [--data-root /var/lib/ntm/agent] [--progress] [--seed-iso] [--json]

subscribers.csv: CSV (RFC 4180: fields with commas, quotes or line breaks in double quotes; UTF-8,
with or without a byte order mark). The first line names the columns, in any order:
  id          the ISP's subscriber id (letters, digits, '-', '_'; at most 64)        required
  household   the name the family sees ("Tanaka home"; at most 63 bytes of UTF-8)   required
  wan_address the vCPE's WAN address, if fixed (else the agent uses its default route's)
  plan        the subscriber's plan, copied into the manifest (for enrollment-key tags)
  lan_mac     the MAC address of the VM's card on the subscriber's LAN (with --seed-iso: the seed's
              network-config names it, and the agent's web page listens there)
  lan_address that card's address with its prefix (192.168.1.2/24); without it, DHCP on the LAN
Other columns are ignored (a warning names them).
For each subscriber DIR/<id>/ gets agent.json (the agent's config, for the vCPE image's first boot),
dc.key (the agent's identity), setup-code and letter.txt (all mode 0600); DIR/manifest.csv lists
them all with each agent's ID. Existing setup codes and identities are kept: re-running is safe.
A bad row is reported on stderr with its line number; the other rows are still provisioned.
Progress goes to stderr when it is a terminal, or with --progress.
--seed-iso also writes DIR/<id>/seed.iso: the cloud-init NoCloud seed (volume label "cidata") to attach
to the subscriber's agent VM; the image's first boot installs the bundle from it, and takes the card
named by lan_mac as the household LAN (firmware/README.md).
Prints one JSON summary line on stdout: {subscribers, failed, newSetupCodes, newIdentities, out, errors}
(always JSON: --json is accepted for symmetry with the other commands).

${EXIT_HELP}  (65 here: some rows were refused; the good ones were written.)
`;

export interface Subscriber {
  readonly line: number;
  readonly id: string;
  readonly household: string;
  readonly wan: string;
  readonly plan: string;
  /** The VM's household LAN card (seed network-config), when the ISP knows its MAC address. */
  readonly lan?: SeedLan;
}

export interface RowError {
  readonly line: number;
  readonly message: string;
}

export interface ParsedSubscribers {
  readonly subscribers: Subscriber[];
  readonly errors: RowError[];
  /** Header columns this command does not know (ignored). */
  readonly ignoredColumns: string[];
}

const KNOWN = ['id', 'household', 'wan_address', 'plan', 'lan_mac', 'lan_address'];

/**
 * Reads the subscribers file: rows that are wrong become errors with their line; the rest are returned. Throws
 * DataError only when the file as a whole is unusable (no header, no id or household column).
 */
export function parseSubscribers(text: string): ParsedSubscribers {
  const records = parseCsv(text);
  const head = records[0];
  if (!head) throw new DataError('subscribers.csv is empty (a header line naming the columns, then one line per subscriber)');
  if (!head.ok) throw new DataError(`subscribers.csv line ${head.line}: ${head.message}`);
  const cols = head.fields.map((f) => f.trim().toLowerCase());
  const at = (name: string): number => cols.indexOf(name);
  if (at('id') < 0 || at('household') < 0)
    throw new DataError(`subscribers.csv line ${head.line}: the header must name the columns "id" and "household" (found: ${cols.join(', ')})`);
  const subscribers: Subscriber[] = [];
  const errors: RowError[] = [];
  const seen = new Map<string, number>();
  for (const r of records.slice(1)) {
    if (!r.ok) {
      errors.push({ line: r.line, message: r.message });
      continue;
    }
    const get = (name: string): string => (at(name) < 0 ? '' : (r.fields[at(name)] ?? '').trim());
    const fail = (message: string) => errors.push({ line: r.line, message });
    const id = get('id');
    const household = get('household');
    const wan = get('wan_address');
    const lanMac = get('lan_mac') === '' ? '' : normalMac(get('lan_mac'));
    const lanAddress = get('lan_address') === '' ? '' : normalCidr(get('lan_address'));
    if (r.fields.length !== cols.length) fail(`${r.fields.length} fields where the header has ${cols.length}`);
    else if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) fail(`bad subscriber id "${id}" (letters, digits, '-', '_')`);
    else if (seen.has(id)) fail(`subscriber ${id} appears twice (first on line ${seen.get(id)})`);
    else if (household === '' || Buffer.byteLength(household) > 63) fail('the household name must be 1-63 bytes of UTF-8');
    else if ([...household].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) fail('the household name contains a control character or line break');
    else if (wan !== '' && !/^[0-9a-fA-F:.]+$/.test(wan)) fail(`bad WAN address "${wan}"`);
    else if (lanMac === undefined) fail(`bad LAN MAC address "${get('lan_mac')}" (six octets, unicast: 52:54:00:12:34:56)`);
    else if (lanAddress === undefined) fail(`bad LAN address "${get('lan_address')}" (ADDRESS/PREFIX: 192.168.1.2/24)`);
    else if (lanAddress !== '' && lanMac === '') fail('lan_address needs lan_mac (the card it is for)');
    else {
      seen.set(id, r.line);
      const lan = lanMac ? { mac: lanMac, ...(lanAddress ? { address: lanAddress } : {}) } : undefined;
      subscribers.push({ line: r.line, id, household, wan, plan: get('plan'), ...(lan ? { lan } : {}) });
    }
  }
  return { subscribers, errors, ignoredColumns: cols.filter((c) => !KNOWN.includes(c)) };
}

export function agentConfig(s: Pick<Subscriber, 'household' | 'wan'>, dataRoot: string): Record<string, unknown> {
  const dataDir = dataRoot;
  const cfg = {
    agent: {
      dataDir,
      household: s.household,
      setupCodeFile: join(dataDir, 'setup-code'),
      ...(s.wan ? { advertise: [s.wan] } : {}),
    },
    dc: { dataDir },
    rs: { dataDir },
  };
  // The file must load in the agent: check it against the schema now, not on the vCPE.
  loadSection('agent', cfg);
  return cfg;
}

export function letter(s: Pick<Subscriber, 'id' | 'household'>, code: string): string {
  return [
    `${s.household}`,
    '',
    'Your home gateway can now let your family reach your smart devices from anywhere,',
    'safely, with the NTMobile app.',
    '',
    'To set it up, at home, open the gateway\'s page:  http://home.gateway:8080/',
    `and enter this one-time setup code:  ${code}`,
    '',
    'You will choose your own password; the code then stops working.',
    `Subscriber: ${s.id}`,
    '',
  ].join('\n');
}

/** Writes `text` unless the file already holds exactly it (a re-run over 10,000 bundles rewrites nothing). */
function writeIfChanged(path: string, text: string, fresh: boolean): void {
  if (!fresh)
    try {
      if (readFileSync(path, 'utf8') === text) return;
    } catch {
      // absent: write it
    }
  writeFileSync(path, text, { mode: 0o600 });
}

interface Outcome {
  readonly agentId: string;
  readonly newCode: boolean;
  readonly newIdentity: boolean;
}

async function provisionOne(s: Subscriber, out: string, dataRoot: string, seedIso: boolean): Promise<Outcome> {
  const dir = join(out, s.id);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const codeFile = join(dir, 'setup-code');
  let code: string;
  const newCode = !existsSync(codeFile);
  if (newCode) {
    code = generateSetupCode();
    writeFileSync(codeFile, code + '\n', { mode: 0o600 });
  } else code = readFileSync(codeFile, 'utf8').trim();
  // The agent's DC identity (first boot installs it as DATA/dc.key): written atomically, kept on re-runs; made durable
  // by one syncfs for the whole run (runProvision) rather than two fsyncs per subscriber.
  const keyFile = join(dir, 'dc.key');
  const newIdentity = !existsSync(keyFile);
  const identity = newIdentity ? Identity.generate() : await Identity.load(keyFile);
  if (newIdentity) await identity.save(keyFile, { durable: false });
  // A bundle seen for the first time (no setup code yet) has nothing to compare with: skip the reads.
  writeIfChanged(join(dir, 'agent.json'), JSON.stringify(agentConfig(s, dataRoot), null, 2) + '\n', newCode);
  writeIfChanged(join(dir, 'letter.txt'), letter(s, code), newCode);
  if (seedIso) writeSeedIso(dir, s.id, s.lan);
  return { agentId: identity.idHex, newCode, newIdentity };
}

/** Progress on stderr: a rewritten line on a terminal, a line every 10% otherwise (a log file). */
function progressReporter(total: number, enabled: boolean, tty: boolean): (done: number) => void {
  if (!enabled || total === 0) return () => {};
  let lastAt = 0;
  let lastTenth = -1;
  return (done) => {
    if (tty) {
      const now = performance.now();
      if (done !== total && now - lastAt < 200) return;
      lastAt = now;
      process.stderr.write(`\rprovisioning ${done}/${total} (${Math.floor((done * 100) / total)}%)${done === total ? '\n' : ''}`);
    } else {
      const tenth = Math.floor((done * 10) / total);
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      process.stderr.write(`provisioning ${done}/${total} (${tenth * 10}%)\n`);
    }
  };
}

/** Subscribers in flight at once: identity files are fsynced, so some overlap hides the disk's latency. */
const CONCURRENCY = 16;

export async function runProvision(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help', 'progress', 'seed-iso', 'json']);
  if (has(p, 'help')) return void process.stdout.write(PROVISION_HELP);
  for (const f of p.flags.keys())
    if (!['subscribers', 'out', 'data-root', 'progress', 'seed-iso', 'json', 'help'].includes(f)) throw new InputError(`unknown option --${f} (see --help)`);
  if (p.positional.length > 0) throw new InputError(`unexpected argument "${p.positional[0]}" (see --help)`);
  const csv = one(p, 'subscribers');
  const out = one(p, 'out');
  if (!csv || !out) throw new InputError('--subscribers and --out are required (see --help)');
  const parsed = parseSubscribers(readFileSync(csv, 'utf8'));
  const dataRoot = one(p, 'data-root') ?? '/var/lib/ntm/agent';
  const errors = [...parsed.errors];
  for (const e of errors) process.stderr.write(`ntm provision: ${csv} line ${e.line}: ${e.message}\n`);
  if (parsed.ignoredColumns.length > 0) process.stderr.write(`ntm provision: ignoring the columns ${parsed.ignoredColumns.join(', ')}\n`);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const subs = parsed.subscribers;
  const report = progressReporter(subs.length, has(p, 'progress') || process.stderr.isTTY === true, process.stderr.isTTY === true);
  const outcomes: Array<Outcome | undefined> = new Array(subs.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < subs.length) {
      const i = next++;
      const s = subs[i]!;
      try {
        outcomes[i] = await provisionOne(s, out, dataRoot, has(p, 'seed-iso'));
      } catch (e) {
        // One subscriber's unwritable directory or damaged key file must not stop the others.
        const message = `cannot provision ${s.id}: ${(e as Error).message}`;
        errors.push({ line: s.line, message });
        process.stderr.write(`ntm provision: ${csv} line ${s.line}: ${message}\n`);
      }
      report(++done);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  // Every bundle on disk before the manifest says it exists (coreutils `sync -f`: syncfs of the output's filesystem).
  execFileSync('sync', ['-f', out]);
  const manifest = ['id,household,plan,agent_id,directory,setup_code_file'];
  subs.forEach((s, i) => {
    const o = outcomes[i];
    if (o) manifest.push([s.id, s.household, s.plan, o.agentId, join(out, s.id), join(out, s.id, 'setup-code')].map(csvField).join(','));
  });
  // Replaced atomically: the ISP's systems never read half a manifest.
  const tmp = join(out, `.manifest.csv.${process.pid}.tmp`);
  writeFileSync(tmp, manifest.join('\n') + '\n', { mode: 0o600 });
  renameSync(tmp, join(out, 'manifest.csv'));
  const ok = outcomes.filter((o): o is Outcome => o !== undefined);
  errors.sort((a, b) => a.line - b.line);
  process.stdout.write(
    JSON.stringify({
      subscribers: ok.length,
      failed: errors.length,
      newSetupCodes: ok.filter((o) => o.newCode).length,
      newIdentities: ok.filter((o) => o.newIdentity).length,
      out,
      errors,
    }) + '\n',
  );
  if (errors.length > 0) process.exitCode = Exit.DATA;
}
