// Import direction (STYLE habit 4, as tailscale's deps_test.go): the data plane imports neither storage, nor web,
// nor control code; interfaces import nothing; only cmd/ wires everything together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const SRC = join(ROOT, 'agent/src');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (n.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports (static, dynamic and re-exports), resolved to a repo path if relative. */
export function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = new Set<string>();
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) {
    const s = m[1] ?? m[2] ?? m[3];
    if (!s) continue;
    specs.add(s.startsWith('.') ? relative(ROOT, resolve(dirname(file), s)) : s);
  }
  return [...specs];
}

interface Rule {
  readonly from: string;
  readonly forbidden: readonly RegExp[];
  readonly why: string;
}

const RULES: Rule[] = [
  {
    from: 'agent/src/dataplane',
    forbidden: [
      /^agent\/src\/(store|registry|dc|rs|terminal|cmd|config|discovery|agent)\//,
      /^web-ui\//,
      /^(better-sqlite3|koa|@koa\/.*|mdns|qrcode)$/,
      /^viem(\/|$)/,
    ],
    why: 'the data plane must not depend on storage, web, control code or the chain client',
  },
  {
    from: 'agent/src',
    forbidden: [/^web-ui\//],
    why: 'only the entry points (agent/src/cmd) wire the web UI in',
  },
  {
    from: 'agent/src/types',
    forbidden: [/^(?!agent\/src\/types\/)/],
    why: 'interfaces import nothing but other interfaces',
  },
  {
    from: 'agent/src/crypto',
    forbidden: [/^agent\/src\/(?!crypto\/|types\/|util\/(keep|bytes)(\.js)?$|native(\.js)?$)/, /^web-ui\//, /^(better-sqlite3|koa|mdns|nfqueue)$/],
    why: 'crypto depends on nothing of ours but interfaces (and util/keep and util/bytes, which depend on nothing)',
  },
  {
    from: 'agent/src/protocol',
    forbidden: [/^agent\/src\/(store|registry|dc|rs|terminal|cmd|dataplane|discovery|agent)\//, /^web-ui\//, /^(better-sqlite3|koa|mdns|nfqueue)$/, /^viem(\/|$)/],
    why: 'wire formats are below every role (and the EVM client: the contract rebuilds them, not the reverse)',
  },
];

test('import direction rules hold for every module', () => {
  const violations: string[] = [];
  for (const file of tsFiles(SRC)) {
    const rel = relative(ROOT, file);
    for (const rule of RULES) {
      if (!rel.startsWith(rule.from + '/')) continue;
      if (rule.from === 'agent/src' && rel.startsWith('agent/src/cmd/')) continue;
      for (const spec of importsOf(file)) {
        const bare = spec.replace(/\.js$/, '');
        if (spec.startsWith('node:')) continue;
        if (rule.forbidden.some((re) => re.test(spec) || re.test(bare)))
          violations.push(`${rel} imports ${spec}: ${rule.why}`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('the rule checker itself catches a forbidden import', () => {
  const rule = RULES[0]!;
  assert.ok(rule.forbidden.some((re) => re.test('agent/src/store/db.js')));
  assert.ok(rule.forbidden.some((re) => re.test('koa')));
  assert.ok(!rule.forbidden.some((re) => re.test('agent/src/crypto/aead.js')));
  const found = importsOf(join(ROOT, 'tests/unit/deps.test.ts'));
  assert.ok(found.includes('node:fs'), 'parses static imports');
});
