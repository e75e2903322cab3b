// Import direction (STYLE habit 4, as tailscale's deps_test.go), over the whole product (agent/src and web-ui/): the
// data plane imports neither storage, nor web, nor control code, nor the agent; the transports (dataplane/conn/) are a
// sibling of the engine that the roles may use; the web UI sees the agent only through its interfaces (types/) and
// util/; interfaces import nothing; only cmd/ wires everything together. Each rule is also fed a made-up violation, so
// a rule that could never fail is caught here too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, relative } from 'node:path';
import { filesUnder, importsOf, ROOT, violations, type ModuleImports, type Rule } from '../lib/imports.js';

const ROLES = 'store|registry|dc|rs|terminal|cmd|config|discovery|agent';

const RULES = {
  dataplane: {
    from: 'agent/src/dataplane',
    forbidden: [new RegExp(`^agent/src/(${ROLES})/`), /^web-ui\//, /^(better-sqlite3|koa|@koa\/.*|mdns|qrcode)$/, /^viem(\/|$)/],
    // The engine (dataplane/engine.ts) reaches the tunnels only through types/tunnels.ts (TunnelTable), which the
    // terminal host implements: the host and the agent import the engine, never the other way round.
    why: 'the data plane must not depend on storage, web, control code, the agent or the chain client',
  },
  transports: {
    from: 'agent/src/dataplane/conn',
    forbidden: [/^agent\/src\/dataplane\/(?!conn\/)/],
    why: 'the transports are a sibling of the data-path engine, not part of it: they import nothing of it',
  },
  socketRoles: {
    from: 'agent/src/dc',
    forbidden: [/^agent\/src\/dataplane\/(?!conn\/)/],
    why: 'the DC uses the data plane only for its transports (dataplane/conn)',
  },
  relay: {
    from: 'agent/src/rs',
    forbidden: [/^agent\/src\/dataplane\/(?!conn\/)/],
    why: 'the RS uses the data plane only for its transports (dataplane/conn)',
  },
  web: {
    from: 'web-ui',
    forbidden: [/^agent\/(?!src\/(types|util)\/)/, /^(tests|scripts|firmware|dist)\//],
    why: 'the web UI sees the agent only through its interfaces (agent/src/types) and util/',
  },
  agentNotWeb: {
    from: 'agent/src',
    except: ['agent/src/cmd'],
    forbidden: [/^web-ui\//],
    why: 'only the entry points (agent/src/cmd) wire the web UI in',
  },
  types: {
    from: 'agent/src/types',
    forbidden: [/^(?!agent\/src\/types\/)/],
    why: 'interfaces import nothing but other interfaces',
  },
  crypto: {
    from: 'agent/src/crypto',
    forbidden: [/^agent\/src\/(?!crypto\/|types\/|util\/(keep|bytes)(\.js)?$|native(\.js)?$)/, /^web-ui\//, /^(better-sqlite3|koa|mdns|nfqueue)$/],
    why: 'crypto depends on nothing of ours but interfaces (and util/keep and util/bytes, which depend on nothing)',
  },
  protocol: {
    from: 'agent/src/protocol',
    forbidden: [/^agent\/src\/(store|registry|dc|rs|terminal|cmd|dataplane|discovery|agent)\//, /^web-ui\//, /^(better-sqlite3|koa|mdns|nfqueue)$/, /^viem(\/|$)/],
    why: 'wire formats are below every role (and the EVM client: the contract rebuilds them, not the reverse)',
  },
} satisfies Record<string, Rule>;

const ALL: readonly Rule[] = Object.values(RULES);

function tree(): ModuleImports[] {
  return [...filesUnder(join(ROOT, 'agent/src')), ...filesUnder(join(ROOT, 'web-ui'))].map((f) => ({ file: relative(ROOT, f), imports: importsOf(f) }));
}

test('import direction rules hold for every module of agent/src and web-ui', () => {
  const modules = tree();
  assert.ok(modules.some((m) => m.file.startsWith('web-ui/client/')) && modules.some((m) => m.file.startsWith('web-ui/server/')), 'both halves of the web UI are scanned');
  assert.ok(modules.length > 100, `found ${modules.length} modules`);
  assert.deepEqual(violations(modules, ALL), []);
});

test('the import parser sees static, type-only, dynamic and side-effect imports and re-exports', () => {
  const found = importsOf(join(ROOT, 'tests/unit/deps.test.ts'));
  assert.ok(found.includes('node:test') && found.includes('tests/lib/imports.js'), found.join(', '));
});

/** One module importing `spec` must break exactly `rule` (and an allowed neighbour must not). */
function fails(rule: Rule, file: string, spec: string): void {
  const v = violations([{ file, imports: [spec] }], [rule]);
  assert.equal(v.length, 1, `${file} importing ${spec} should break "${rule.why}"`);
}
function passes(rule: Rule, file: string, spec: string): void {
  assert.deepEqual(violations([{ file, imports: [spec] }], [rule]), [], `${file} importing ${spec} is allowed`);
}

test('each rule fails on a made-up forbidden import', () => {
  // The web UI: a concrete store, a role or a test helper is refused; interfaces, util, its own files, npm and node are not.
  fails(RULES.web, 'web-ui/server/api.ts', 'agent/src/agent/household-store.js');
  fails(RULES.web, 'web-ui/server/auth.ts', 'agent/src/store/db.js');
  fails(RULES.web, 'web-ui/client/app.ts', 'agent/src/agent/runtime.js');
  fails(RULES.web, 'web-ui/server/app.ts', 'tests/lib/browser.js');
  passes(RULES.web, 'web-ui/server/api.ts', 'agent/src/types/owner.js');
  passes(RULES.web, 'web-ui/client/api.ts', 'agent/src/types/household.js');
  passes(RULES.web, 'web-ui/server/live.ts', 'agent/src/util/log.js');
  passes(RULES.web, 'web-ui/server/app.ts', 'web-ui/server/auth.js');
  passes(RULES.web, 'web-ui/server/app.ts', 'koa');
  passes(RULES.web, 'web-ui/server/app.ts', 'node:http');

  // The data plane and the agent.
  fails(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'agent/src/agent/runtime.js');
  fails(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'agent/src/terminal/host.js');
  fails(RULES.dataplane, 'agent/src/dataplane/policy.ts', 'agent/src/agent/household-store.js');
  fails(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'better-sqlite3');
  fails(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'viem');
  passes(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'agent/src/dataplane/packet/parse.js');
  passes(RULES.dataplane, 'agent/src/dataplane/engine.ts', 'agent/src/types/tunnels.js');

  // The transports are a sibling of the engine.
  fails(RULES.transports, 'agent/src/dataplane/conn/udp.ts', 'agent/src/dataplane/engine.js');
  fails(RULES.transports, 'agent/src/dataplane/conn/udp.ts', 'agent/src/dataplane/packet/parse.js');
  passes(RULES.transports, 'agent/src/dataplane/conn/udp.ts', 'agent/src/dataplane/conn/native-udp.js');
  passes(RULES.transports, 'agent/src/dataplane/conn/udp.ts', 'agent/src/types/net.js');
  passes(RULES.transports, 'agent/src/dataplane/engine.ts', 'agent/src/dataplane/packet/parse.js');

  // The DC and RS may use the transports, not the engine.
  fails(RULES.socketRoles, 'agent/src/dc/server.ts', 'agent/src/dataplane/engine.js');
  passes(RULES.socketRoles, 'agent/src/dc/server.ts', 'agent/src/dataplane/conn/udp.js');
  fails(RULES.relay, 'agent/src/rs/server.ts', 'agent/src/dataplane/nfqueue/open.js');
  passes(RULES.relay, 'agent/src/rs/server.ts', 'agent/src/dataplane/conn/udp.js');

  // Only cmd/ wires the web UI in; interfaces, crypto and wire formats stay below everything.
  fails(RULES.agentNotWeb, 'agent/src/agent/runtime.ts', 'web-ui/server/app.js');
  passes(RULES.agentNotWeb, 'agent/src/cmd/run-agent.ts', 'web-ui/server/app.js');
  fails(RULES.types, 'agent/src/types/household.ts', 'agent/src/agent/names.js');
  passes(RULES.types, 'agent/src/types/household.ts', 'agent/src/types/net.js');
  fails(RULES.crypto, 'agent/src/crypto/aead.ts', 'agent/src/store/db.js');
  passes(RULES.crypto, 'agent/src/crypto/aead.ts', 'agent/src/native.js');
  fails(RULES.protocol, 'agent/src/protocol/control.ts', 'agent/src/dc/server.js');
  fails(RULES.protocol, 'agent/src/protocol/node-transaction.ts', 'viem/accounts');
  passes(RULES.protocol, 'agent/src/protocol/control.ts', 'agent/src/crypto/hex.js');
});
