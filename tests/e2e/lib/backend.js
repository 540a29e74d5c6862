// A real HTTP REST-hook backend: records every request and answers per programmable rules.
import http from 'node:http';
import { show, waitFor } from './util.js';

/** Answer helpers for rules. */
export const reply = {
  /** 200 with the request body as is (what WCS's EchoApp does). */
  mirror: (req) => ({ status: 200, body: req.rawBody || '{}' }),
  json: (status, obj, headers = {}) => ({ status, body: JSON.stringify(obj), headers }),
  status: (status, body = '', headers = {}) => ({ status, body, headers }),
};

/**
 * Starts the backend on 127.0.0.1 (port chosen by the OS).
 * Hooks arrive as POST {base}/{method}; `backend.url` is the REST URL to configure for an app.
 */
export async function startBackend({ basePath = '/hooks' } = {}) {
  /** @type {Array<{method:string, path:string, hook:string|null, headers:object, rawBody:string, body:any, at:number}>} */
  const requests = [];
  const rules = new Map(); // hook name -> (req) => answer
  let fallback = reply.mirror;

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let body;
      try {
        body = rawBody ? JSON.parse(rawBody) : undefined;
      } catch {
        body = { __unparsable: rawBody };
      }
      const url = new URL(req.url, 'http://127.0.0.1');
      const hook = url.pathname.startsWith(`${basePath}/`) ? decodeURIComponent(url.pathname.slice(basePath.length + 1)) : null;
      const record = { method: req.method, path: url.pathname, hook, headers: req.headers, rawBody, body, at: Date.now() };
      requests.push(record);
      let answer;
      try {
        const rule = (hook && rules.get(hook)) || fallback;
        answer = await rule(record);
      } catch (e) {
        answer = { status: 500, body: `rule threw: ${e.message}` };
      }
      const { status = 200, body: out = '', headers = {}, reason } = answer || {};
      const hdrs = { 'Content-Type': 'application/json', ...headers };
      if (reason) res.writeHead(status, reason, hdrs);
      else res.writeHead(status, hdrs);
      res.end(out);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();

  const summary = () => requests.map((r) => ({ hook: r.hook ?? r.path, body: r.body }));

  return {
    port,
    url: `http://127.0.0.1:${port}${basePath}`,
    requests,
    /** Requests to one hook method, e.g. 'connect', in arrival order. */
    hooks: (name) => requests.filter((r) => r.hook === name),
    /** A short list (hook + body) for failure messages. */
    summary,
    /** Sets the answer rule of one hook method: (record) => {status, body(string), headers?, reason?}. */
    on(hook, rule) {
      rules.set(hook, rule);
      return this;
    },
    /** The rule for every hook without its own rule (default: mirror). */
    otherwise(rule) {
      fallback = rule;
      return this;
    },
    /** Waits until a request to `hook` whose record satisfies `pred` has arrived; returns it. */
    waitForHook(hook, pred = () => true, what) {
      return waitFor(() => requests.find((r) => r.hook === hook && pred(r)), {
        what: what || `backend hook /${hook}`,
        seen: summary,
      });
    },
    describe: () => show(summary()),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
