// Compiles the Solidity sources under contracts/ with npm's solc (a pinned version and pinned settings, so the ABI and
// bytecode are reproducible: the same source gives the same bytes on every machine) and writes one JSON artifact per
// contract to dist/contracts/. Run by scripts/postbuild.ts; tests/unit/evm-contract.test.ts compiles again and compares.
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type Solc from 'solc';
import { keccak256, toHex } from '../agent/src/crypto/hex.js';
import { NtmError } from '../agent/src/types/errors.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** The compiler the artifacts come from; another one is a CompileError, not a silent difference in the bytecode. */
export const SOLC_VERSION = '0.8.37';

/**
 * Every setting that changes the output, spelled out instead of left to solc's defaults. evmVersion "cancun" runs on
 * anvil and on Hyperledger Besu (docs/ledger.md); no CBOR metadata trailer, so the code depends on the code alone.
 */
export const SOLC_SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  viaIR: false,
  metadata: { appendCBOR: false, bytecodeHash: 'none' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
} as const;

/** The pinned compiler is missing, or the sources do not compile cleanly (warnings included). */
export class CompileError extends NtmError {
  override readonly name = 'CompileError';
  override readonly code = 'compile';
}

export const CONTRACT_SOURCES = ['contracts/NtmRegistry.sol'] as const;

export interface ContractArtifact {
  readonly contractName: string;
  readonly source: string;
  /** keccak256 of the source file, to tell which source an artifact came from. */
  readonly sourceKeccak: string;
  readonly compiler: string;
  readonly settings: typeof SOLC_SETTINGS;
  readonly abi: readonly unknown[];
  /** Creation code, 0x-prefixed. */
  readonly bytecode: string;
  /** Runtime code, 0x-prefixed (what eth_getCode returns after deployment). */
  readonly deployedBytecode: string;
}

interface SolcOutput {
  errors?: Array<{ severity: 'error' | 'warning' | 'info'; formattedMessage: string }>;
  contracts?: Record<string, Record<string, { abi: unknown[]; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }>>;
}

/** Compiles every source; warnings are errors too (a contract that the compiler doubts does not ship). */
export function compileContracts(root = ROOT): ContractArtifact[] {
  // Loaded here, not at the top: requiring solc compiles its WebAssembly, which the up-to-date check never needs.
  const solc = createRequire(import.meta.url)('solc') as typeof Solc;
  const version = String(solc.version());
  if (!version.startsWith(`${SOLC_VERSION}+`)) throw new CompileError(`solc ${version} installed, ${SOLC_VERSION} pinned`);
  const sources: Record<string, { content: string }> = {};
  for (const path of CONTRACT_SOURCES) sources[path] = { content: readFileSync(join(root, path), 'utf8') };
  const input = { language: 'Solidity', sources, settings: SOLC_SETTINGS };
  const out = JSON.parse(String(solc.compile(JSON.stringify(input)))) as SolcOutput;
  const problems = (out.errors ?? []).filter((e) => e.severity !== 'info');
  if (problems.length > 0) throw new CompileError(problems.map((e) => e.formattedMessage).join('\n'));
  const artifacts: ContractArtifact[] = [];
  for (const path of CONTRACT_SOURCES) {
    for (const [contractName, c] of Object.entries(out.contracts?.[path] ?? {})) {
      artifacts.push({
        contractName,
        source: path,
        sourceKeccak: toHex(keccak256(Buffer.from(sources[path]!.content, 'utf8'))),
        compiler: version,
        settings: SOLC_SETTINGS,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      });
    }
  }
  return artifacts;
}

/** Where the build puts a contract's artifact (the EVM registry backend reads it from there). */
export function artifactPath(contractName: string, root = ROOT): string {
  return join(root, 'dist', 'contracts', `${contractName}.json`);
}

/**
 * The artifacts in dist/contracts/ when they came from today's sources, compiler and settings, else null. Loading
 * solc's 9 MB of WebAssembly-compiled JavaScript costs seconds, so an unchanged contract is not compiled again.
 */
export function currentArtifacts(root = ROOT): ContractArtifact[] | null {
  const installed = (JSON.parse(readFileSync(join(root, 'node_modules/solc/package.json'), 'utf8')) as { version: string }).version;
  const found: ContractArtifact[] = [];
  for (const path of CONTRACT_SOURCES) {
    const name = basename(path, '.sol');
    let a: ContractArtifact;
    try {
      a = JSON.parse(readFileSync(artifactPath(name, root), 'utf8')) as ContractArtifact;
    } catch {
      return null;
    }
    const keccak = toHex(keccak256(readFileSync(join(root, path))));
    if (a.sourceKeccak !== keccak || installed !== SOLC_VERSION || !a.compiler.startsWith(`${SOLC_VERSION}+`)) return null;
    if (JSON.stringify(a.settings) !== JSON.stringify(SOLC_SETTINGS)) return null;
    found.push(a);
  }
  return found;
}

/** Compiles (unless up to date) and writes dist/contracts/<Name>.json; returns the artifacts. */
export function buildContracts(root = ROOT, force = false): ContractArtifact[] {
  const current = force ? null : currentArtifacts(root);
  if (current) return current;
  const artifacts = compileContracts(root);
  mkdirSync(join(root, 'dist', 'contracts'), { recursive: true });
  for (const a of artifacts) writeFileSync(artifactPath(a.contractName, root), `${JSON.stringify(a, null, 2)}\n`);
  return artifacts;
}

/** The typed ABI module the client imports (viem infers argument and result types from an `as const` ABI). */
export const ABI_MODULE = 'agent/src/registry/evm/abi.ts';

/** The text of ABI_MODULE for these artifacts; a test compares it with the checked-in file. */
export function abiModuleText(artifacts: readonly ContractArtifact[]): string {
  const lines = [
    '// The ABI of contracts/NtmRegistry.sol, as `as const` data so viem types every call. Generated from the compiler output by',
    '// `node dist/scripts/contracts.js --write-abi`; tests/evm/contract-build.test.ts fails when it differs from the contract.',
    '',
  ];
  // One ABI entry a line, in the repository's quote style (ABI strings hold no quotes).
  const ts = (v: unknown): string => JSON.stringify(v).replace(/"([A-Za-z_$][\w$]*)":/g, '$1: ').replace(/"/g, "'").replace(/,(?=[\w[{'])/g, ', ');
  for (const a of artifacts) lines.push(`export const ${a.contractName}Abi = [`, ...a.abi.map((e) => `  ${ts(e)},`), '] as const;', '');
  return lines.join('\n');
}

if (import.meta.filename === process.argv[1]) {
  const artifacts = buildContracts(ROOT, true);
  if (process.argv.includes('--write-abi')) writeFileSync(join(ROOT, ABI_MODULE), abiModuleText(artifacts));
  for (const a of artifacts) process.stdout.write(`${artifactPath(a.contractName)}: ${(a.bytecode.length - 2) / 2} bytes of creation code\n`);
}
