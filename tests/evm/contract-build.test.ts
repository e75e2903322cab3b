// The contract's build is reproducible: the pinned solc with the pinned settings gives the same ABI and bytecode twice,
// the build wrote exactly that to dist/contracts/, and the typed ABI the client imports is the compiler's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ABI_MODULE, abiModuleText, artifactPath, compileContracts, SOLC_VERSION } from '../../scripts/contracts.js';
import { ROOT } from '../lib/ntm.js';

// Each compilation loads and runs solc (seconds): the second test reuses the first's.
let first: ReturnType<typeof compileContracts> | undefined;

test('two compilations of contracts/ give identical ABI and bytecode, equal to what the build wrote', () => {
  const a = compileContracts(ROOT);
  const b = compileContracts(ROOT);
  first = a;
  assert.deepEqual(a, b);
  assert.equal(a.length, 1);
  const art = a[0]!;
  assert.equal(art.contractName, 'NtmRegistry');
  assert.ok(art.compiler.startsWith(`${SOLC_VERSION}+`), art.compiler);
  assert.ok(art.bytecode.length > 1000 && /^0x[0-9a-f]+$/.test(art.bytecode));
  const built = JSON.parse(readFileSync(artifactPath('NtmRegistry', ROOT), 'utf8')) as unknown;
  assert.deepEqual(built, JSON.parse(JSON.stringify(art)), 'dist/contracts/NtmRegistry.json is stale: rebuild');
});

test('the checked-in typed ABI is the compiled one', () => {
  const text = readFileSync(join(ROOT, ABI_MODULE), 'utf8');
  assert.equal(text, abiModuleText(first ?? compileContracts(ROOT)), `${ABI_MODULE} differs from the contract: node dist/scripts/contracts.js --write-abi`);
});
