// `ntm keys`: enrollment keys of an ISP-run DC (operator/enrollment-keys.ts says what a key enrolls). It works on the
// DC's database directly, whether the DC runs or not (SQLite WAL: the running DC sees a new or revoked key at the next
// registration that presents it). The operator API offers the same over HTTP.
import { join } from 'node:path';
import { loadSection, readConfigFile } from '../config/schema.js';
import { openDb } from '../store/db.js';
import { Identity } from '../protocol/identity.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { EnrollmentKeys, parseDuration, type KeyInfo } from '../operator/enrollment-keys.js';
import { InputError, NotFoundError } from '../types/errors.js';
import { existsSync } from 'node:fs';
import { parseArgs, one, has } from './args.js';
import { resolveIn } from './common.js';
import { EXIT_HELP } from './exit.js';

export const KEYS_HELP = `ntm keys — enrollment keys of a DC that admits only keyed terminals (operator.admission = "key")

  ntm keys create [--data-dir DIR] [--advertise ADDR:PORT]... [--subscriber ID] [--tag TAG]...
                  [--description TEXT] [--expires 7d] [--uses 1] [--json]
  ntm keys list   [--data-dir DIR] [--json]
  ntm keys revoke [--data-dir DIR] [--json] KEY-ID

A key lets one terminal per use (an \`ntm up\` phone or laptop) register with this DC the first
time: \`ntm enroll KEY\` on it. --uses 0 makes it reusable (any number); --expires is at most 90d;
--tag (like plan:fiber-1g) and --subscriber are attached to every terminal the key admits, and shown
by the operator API. A revoked, expired or used-up key is refused (the DC logs why and counts it in
ntm_dc_enrollment_refusals_total); terminals it already admitted stay until revoked themselves.
DIR is the DC's data directory (default /var/lib/ntm/dc); --advertise defaults to the DC's
configured dc.advertise (--config FILE): the addresses written into the key.

${EXIT_HELP}`;

function describe(k: KeyInfo): string {
  const uses = k.maxUses === 0 ? `${k.uses} uses (reusable)` : `${k.uses}/${k.maxUses} uses`;
  return `${k.id}  ${k.state.padEnd(7)}  ${uses}  expires ${new Date(k.expiresAt).toISOString()}  subscriber ${k.subscriber || '-'}  tags ${k.tags.join(',') || '-'}${k.description ? `  "${k.description}"` : ''}`;
}

export async function runKeys(argv: readonly string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const p = parseArgs(rest, ['help', 'json']);
  if (sub === undefined || sub === '--help' || sub === 'help' || has(p, 'help')) return void process.stdout.write(KEYS_HELP);
  if (!['create', 'list', 'revoke'].includes(sub)) throw new InputError(`unknown keys command "${sub}" (create, list, revoke)`);
  const allowed = ['data-dir', 'config', 'json', 'help', ...(sub === 'create' ? ['advertise', 'subscriber', 'tag', 'description', 'expires', 'uses'] : [])];
  for (const f of p.flags.keys()) if (!allowed.includes(f)) throw new InputError(`unknown option --${f} for ntm keys ${sub} (see --help)`);
  const file = readConfigFile(one(p, 'config'));
  const dc = loadSection('dc', file, one(p, 'data-dir') ? { 'dc.dataDir': one(p, 'data-dir') } : {});
  const json = has(p, 'json');
  const db = openDb(join(dc.dataDir, 'dc.db'));
  try {
    const keys = new EnrollmentKeys(db);
    if (sub === 'list') {
      if (p.positional.length > 0) throw new InputError('ntm keys list takes no arguments');
      const all = keys.list();
      return void process.stdout.write(json ? JSON.stringify(all, null, 2) + '\n' : all.map(describe).join('\n') + (all.length ? '\n' : 'no enrollment keys\n'));
    }
    if (sub === 'revoke') {
      if (p.positional.length !== 1) throw new InputError('usage: ntm keys revoke [--data-dir DIR] KEY-ID');
      const k = keys.revoke(p.positional[0]!);
      return void process.stdout.write(json ? JSON.stringify(k) + '\n' : `revoked ${describe(k)}\n`);
    }
    if (p.positional.length > 0) throw new InputError(`unexpected argument "${p.positional[0]}" (see --help)`);
    const keyFile = resolveIn(dc.dataDir, dc.key);
    if (!existsSync(keyFile)) throw new NotFoundError(`no DC identity at ${keyFile}: run the DC once (or \`ntm dc --print-id\`) with this --data-dir`);
    const identity = await Identity.load(keyFile);
    const adv = p.flags.get('advertise') ?? dc.advertise;
    const endpoints = adv.map((a) => {
      try {
        return parseEndpoint(a);
      } catch (e) {
        throw new InputError(`--advertise: ${(e as Error).message}`);
      }
    });
    const usesText = one(p, 'uses') ?? '1';
    if (!/^\d+$/.test(usesText)) throw new InputError('--uses takes a whole number (0: reusable)');
    const { key, token } = keys.create({
      subscriber: one(p, 'subscriber') ?? '',
      tags: p.flags.get('tag') ?? [],
      description: one(p, 'description') ?? '',
      ttlMs: parseDuration(one(p, 'expires') ?? '7d'),
      maxUses: Number(usesText),
      dcPublicKey: identity.publicKey,
      dcEndpoints: endpoints,
    });
    process.stdout.write(json ? JSON.stringify({ key, token }) + '\n' : `${token}\n${describe(key)}\n`);
  } finally {
    db.close();
  }
}
