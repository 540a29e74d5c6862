// The SDK over wss:// (issue 11 item 3): callgate's [tls] listeners with a certificate made for
// this run (openssl), trusted by this file's Chromium through
// --ignore-certificate-errors-spki-list=<its key's SPKI hash> (exact: no other certificate is
// accepted), and the REST API over https:// with a client that trusts only that certificate.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { e2eSuite } from '../lib/fixture.js';
import { canConnect, freePort, show, waitFor } from '../lib/util.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callgate-e2e-tls-'));
const certPath = path.join(dir, 'server.crt');
const keyPath = path.join(dir, 'server.key');
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=callgate e2e', '-addext', 'subjectAltName=IP:127.0.0.1',
  '-keyout', keyPath, '-out', certPath,
], { stdio: 'ignore' });
const certPem = fs.readFileSync(certPath, 'utf8');
const spki = crypto.createPublicKey(fs.readFileSync(keyPath)).export({ type: 'spki', format: 'der' });
const spkiHash = crypto.createHash('sha256').update(spki).digest('base64');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const e2eTest = e2eSuite({ browserArgs: [`--ignore-certificate-errors-spki-list=${spkiHash}`] });

/** POST over https to 127.0.0.1:port trusting only this run's certificate. */
function httpsPost(port, pathname) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: pathname, method: 'POST', ca: certPem, headers: { 'Content-Length': 0 } }, (res) => {
      let body = '';
      const cert = res.socket.getPeerCertificate();
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, cert }));
    });
    req.on('error', reject);
    req.end();
  });
}

const wssPort = await freePort();
let httpsPort = await freePort();
while (httpsPort === wssPort) httpsPort = await freePort();
const tlsToml = `[tls]\nwss_bind = "127.0.0.1:${wssPort}"\nhttps_bind = "127.0.0.1:${httpsPort}"\ncert = ${JSON.stringify(certPath)}\nkey = ${JSON.stringify(keyPath)}\n`;

e2eTest(
  'SDK over wss:// -> ESTABLISHED, the session in /rest-api over https://, hooks as over ws',
  async ({ sdk, backend }) => {
    await waitFor(async () => (await canConnect(wssPort)) && (await canConnect(httpsPort)), { what: 'the TLS ports to open' });
    await sdk.createSession({ urlServer: `wss://127.0.0.1:${wssPort}`, appKey: 'backendApp', custom: { token: 't' } });
    const established = await sdk.waitForEvent('ESTABLISHED');
    const names = await sdk.eventNames();
    assert.deepEqual(names.slice(0, 2), ['CONNECTED', 'ESTABLISHED'], `event order: ${show(names)}`);
    const sessionId = established.payload.sessionId;
    assert.equal(typeof sessionId, 'string');
    await backend.waitForHook('ConnectionStatusEvent', (r) => r.body?.status === 'ESTABLISHED', 'ConnectionStatusEvent ESTABLISHED');

    const r = await httpsPost(httpsPort, '/rest-api/connection/find_all');
    assert.equal(r.status, 200, r.body);
    assert.ok(JSON.parse(r.body).some((c) => c.sessionId === sessionId), `find_all over https lists the wss session: ${r.body}`);
    assert.equal(r.cert?.subject?.CN, 'callgate e2e');

    await sdk.disconnect();
    await sdk.waitForEvent('DISCONNECTED');
    await backend.waitForHook('ConnectionStatusEvent', (x) => x.body?.status === 'DISCONNECTED', 'ConnectionStatusEvent DISCONNECTED');
  },
  { callgate: { extraToml: tlsToml } },
);
