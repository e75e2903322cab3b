// What a module imports, and the import-direction rules checked over a list of (module, imports) pairs: shared by
// tests/unit/deps.test.ts (the rules over the whole tree, and fed made-up import lists to show each rule can fail) and
// the check that the built page loads nothing but its own files.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..', '..');

/** Every file under `dir` whose name ends with one of `exts` (default: TypeScript sources). */
export function filesUnder(dir: string, exts: readonly string[] = ['.ts']): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, exts));
    else if (exts.some((e) => n.endsWith(e))) out.push(p);
  }
  return out;
}

/** Module specifiers in source text (static, dynamic, side-effect imports and re-exports), as written. */
export function specifiersIn(text: string): string[] {
  const specs = new Set<string>();
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) {
    const s = m[1] ?? m[2] ?? m[3];
    if (s) specs.add(s);
  }
  return [...specs];
}

/** Every module specifier a file imports, resolved to a repo path ("agent/src/types/net.js") if relative. */
export function importsOf(file: string): string[] {
  return specifiersIn(readFileSync(file, 'utf8')).map((s) => (s.startsWith('.') ? relative(ROOT, resolve(dirname(file), s)) : s));
}

export interface Rule {
  /** The folder (repo path) whose modules the rule holds. */
  readonly from: string;
  /** Modules below `from` that the rule leaves out (the entry points that wire everything together). */
  readonly except?: readonly string[];
  /** An import matching any of these (with or without its .js) is a violation. */
  readonly forbidden: readonly RegExp[];
  readonly why: string;
}

export interface ModuleImports {
  /** Repo path of the importing module. */
  readonly file: string;
  readonly imports: readonly string[];
}

/** Each forbidden import as "file imports spec: why"; node: built-ins are always allowed. */
export function violations(modules: readonly ModuleImports[], rules: readonly Rule[]): string[] {
  const out: string[] = [];
  for (const { file, imports } of modules) {
    for (const rule of rules) {
      if (!file.startsWith(rule.from + '/')) continue;
      if (rule.except?.some((e) => file.startsWith(e + '/'))) continue;
      for (const spec of imports) {
        if (spec.startsWith('node:')) continue;
        const bare = spec.replace(/\.js$/, '');
        if (rule.forbidden.some((re) => re.test(spec) || re.test(bare))) out.push(`${file} imports ${spec}: ${rule.why}`);
      }
    }
  }
  return out;
}
