// The built page (dist/web-ui/client) loads nothing but its own served files: the agent's view types it shares with
// the server (agent/src/types/household.ts) are type-only and must compile away, not become an import the browser
// would fetch from outside the page (and the server refuse).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadStatic } from '../../web-ui/server/static.js';
import { filesUnder, ROOT, specifiersIn } from '../lib/imports.js';

const DIR = join(ROOT, 'dist/web-ui/client');

test('every module of the built page imports only modules the web server serves', () => {
  const served = loadStatic(DIR);
  const modules = filesUnder(DIR, ['.js']);
  assert.ok(modules.length >= 3, `found ${modules.length} modules in ${DIR}`);
  for (const m of modules) {
    const name = m.slice(DIR.length);
    assert.ok(served.has(name), `${name} is served`);
    for (const spec of specifiersIn(readFileSync(m, 'utf8'))) {
      assert.match(spec, /^\.\/[\w-]+\.js$/, `${name} imports ${spec}: the page may import only its own modules`);
      assert.ok(served.has(spec.slice(1)), `${name} imports ${spec}, which the server does not serve`);
    }
  }
  const html = served.get('/index.html')!.body.toString('utf8');
  assert.match(html, /<script type="module" src="app\.js"><\/script>/);
});

test('the shared view types reach the page as types only', () => {
  const api = readFileSync(join(DIR, 'api.js'), 'utf8');
  assert.doesNotMatch(api, /types\/household/, 'no trace of the agent\'s types file in the built page');
  assert.match(readFileSync(join(ROOT, 'web-ui/client/api.ts'), 'utf8'), /from '\.\.\/\.\.\/agent\/src\/types\/household\.js'/, 'the source does use them');
});
