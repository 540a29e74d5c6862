// Serves the SDK package as it is installed (its own `examples/demo/...` pages, their
// dependencies and the `flashphoner.js` bundle the pages load from the package root) on
// 127.0.0.1, and passes `/client/records/*` on to callgate's HTTP port: the SDK's Stream
// Recording page builds its download link from its own origin (`<origin>/client/records/<name>`,
// where WCS serves records), so the page's server must answer there, as a reverse proxy in front
// of callgate would.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const SDK_ROOT = path.dirname(require.resolve('@flashphoner/websdk/package.json'));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'application/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.mp4': 'video/mp4',
};

/** `recordsTo`: callgate's HTTP base URL (`http://127.0.0.1:<port>`). */
export async function startDemoServer({ recordsTo }) {
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    if (pathname.startsWith('/client/records/')) {
      const headers = { ...req.headers };
      delete headers.host;
      const up = http.request(`${recordsTo}${pathname}`, { method: req.method, headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', (e) => {
        res.writeHead(502, { 'Content-Type': 'text/plain' });
        res.end(String(e));
      });
      req.pipe(up);
      return;
    }
    const file = path.join(SDK_ROOT, path.normalize(decodeURIComponent(pathname)));
    if (req.method !== 'GET' || !file.startsWith(SDK_ROOT + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
