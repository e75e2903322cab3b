// The page's own files (dist/web-ui/client): read once at start into memory, served by exact name only, so no
// request path ever reaches the file system (no traversal, no directory listing).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
};

export interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** Files of `dir` by URL path ("/app.js"); "/" is index.html. Source maps and build info are left out. */
export function loadStatic(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return files;
  }
  for (const n of names) {
    const type = TYPES[extname(n)];
    const p = join(dir, n);
    if (!type || !statSync(p).isFile()) continue;
    const body = readFileSync(p);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(`/${n}`, { body, type, etag });
  }
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  return files;
}
