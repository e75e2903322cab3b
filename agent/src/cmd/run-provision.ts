// `ntm provision`: an ISP's bulk provisioning of household agents. From a CSV of subscribers it writes, per
// subscriber, the agent's configuration (agent.json), its one-time web setup code (printed on the letter the household
// receives; the agent accepts it once, to set the owner's password), the letter itself, and a manifest for the ISP's
// systems. Re-running keeps what exists (idempotent): a subscriber's setup code never changes behind its letter.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../types/errors.js';
import { loadSection } from '../config/schema.js';
import { parseArgs, one, has } from './args.js';
import { generateSetupCode } from '../../../web-ui/server/auth.js';

export const PROVISION_HELP = `ntm provision — bulk provisioning of household agents (for the ISP)

  ntm provision --subscribers subscribers.csv --out DIR [--data-root /var/lib/ntm/agent]

subscribers.csv: a header line, then one subscriber per line:  id,household[,wan_address]
  id          the ISP's subscriber id (letters, digits, '-', '_')
  household   the name the family sees ("Tanaka home")
  wan_address the vCPE's WAN address, if fixed (else the agent uses its default route's)
For each subscriber DIR/<id>/ gets agent.json (the agent's config, for the vCPE image's first boot),
setup-code (mode 0600) and letter.txt; DIR/manifest.csv lists them all. Existing setup codes are kept.
`;

export interface Subscriber {
  readonly id: string;
  readonly household: string;
  readonly wan: string;
}

/** Parses the CSV (a header line first); throws InputError naming the line. */
export function parseSubscribers(text: string): Subscriber[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length < 2) throw new InputError('subscribers.csv has no subscribers (a header line, then one line each)');
  const out: Subscriber[] = [];
  const seen = new Set<string>();
  lines.slice(1).forEach((line, i) => {
    const f = line.split(',').map((x) => x.trim());
    const [id = '', household = '', wan = ''] = f;
    const where = `subscribers.csv line ${i + 2}`;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new InputError(`${where}: bad subscriber id "${id}"`);
    if (seen.has(id)) throw new InputError(`${where}: subscriber ${id} appears twice`);
    if (household === '' || household.length > 63) throw new InputError(`${where}: the household name must be 1-63 characters`);
    if (wan !== '' && !/^[0-9a-fA-F:.]+$/.test(wan)) throw new InputError(`${where}: bad WAN address "${wan}"`);
    seen.add(id);
    out.push({ id, household, wan });
  });
  return out;
}

export function agentConfig(s: Subscriber, dataRoot: string): Record<string, unknown> {
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

export function letter(s: Subscriber, code: string): string {
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

export async function runProvision(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help']);
  if (has(p, 'help')) return void process.stdout.write(PROVISION_HELP);
  const csv = one(p, 'subscribers');
  const out = one(p, 'out');
  if (!csv || !out) throw new InputError('--subscribers and --out are required (see --help)');
  const subs = parseSubscribers(readFileSync(csv, 'utf8'));
  const dataRoot = one(p, 'data-root') ?? '/var/lib/ntm/agent';
  const manifest = ['id,household,directory,setup_code_file'];
  let created = 0;
  for (const s of subs) {
    const dir = join(out, s.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const codeFile = join(dir, 'setup-code');
    let code: string;
    if (existsSync(codeFile)) code = readFileSync(codeFile, 'utf8').trim();
    else {
      code = generateSetupCode();
      writeFileSync(codeFile, code + '\n', { mode: 0o600 });
      created++;
    }
    writeFileSync(join(dir, 'agent.json'), JSON.stringify(agentConfig(s, dataRoot), null, 2) + '\n', { mode: 0o600 });
    writeFileSync(join(dir, 'letter.txt'), letter(s, code), { mode: 0o600 });
    manifest.push([s.id, JSON.stringify(s.household), dir, codeFile].join(','));
  }
  writeFileSync(join(out, 'manifest.csv'), manifest.join('\n') + '\n', { mode: 0o600 });
  process.stdout.write(JSON.stringify({ subscribers: subs.length, newSetupCodes: created, out }) + '\n');
}
