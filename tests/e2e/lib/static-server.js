// Serves the test page, the SDK bundle and hls.js (straight from node_modules) on 127.0.0.1.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The browserified bundle shipped in the package root (defines window.Flashphoner). */
export const SDK_BUNDLE = path.join(path.dirname(require.resolve('@flashphoner/websdk/package.json')), 'flashphoner.js');
/** hls.js's browser build (defines window.Hls), for HLS players on the test page. */
export const HLS_JS = path.join(path.dirname(require.resolve('hls.js/package.json')), 'dist', 'hls.min.js');
const INDEX = path.join(here, '..', 'static', 'index.html');

export async function startStaticServer() {
  const files = {
    '/': { file: INDEX, type: 'text/html; charset=utf-8' },
    '/index.html': { file: INDEX, type: 'text/html; charset=utf-8' },
    '/flashphoner.js': { file: SDK_BUNDLE, type: 'application/javascript; charset=utf-8' },
    '/hls.min.js': { file: HLS_JS, type: 'application/javascript; charset=utf-8' },
  };
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    if (pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    const entry = req.method === 'GET' ? files[pathname] : undefined;
    if (!entry) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': entry.type, 'Cache-Control': 'no-store' });
    fs.createReadStream(entry.file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
