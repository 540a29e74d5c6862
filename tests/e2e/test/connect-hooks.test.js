// The /connect hook decides: rejection (custom reason or HTTP reason phrase) and token check.
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import { show, sleep } from '../lib/util.js';

const e2eTest = e2eSuite();

async function expectRejected({ sdk, session, backend }, expectedInfo) {
  await session({ appKey: 'backendApp', custom: { token: 'bad' } });
  const warn = await sdk.waitForEvent('WARN');
  assert.equal(warn.payload?.info, expectedInfo, `WARN payload: ${show(warn.payload)}`);
  assert.equal(warn.payload?.status, 'FAILED', `WARN payload: ${show(warn.payload)}`);
  assert.equal(warn.payload?.apiMethod, 'ConnectionStatusEvent', `WARN payload: ${show(warn.payload)}`);
  await sdk.waitForEvent('DISCONNECTED');
  // A short grace period: nothing may follow (in particular never ESTABLISHED).
  await sleep(200);
  const names = await sdk.eventNames();
  assert.deepEqual(names, ['CONNECTED', 'WARN', 'DISCONNECTED'], `events: ${show(names)}`);

  const connect = backend.hooks('connect');
  assert.equal(connect.length, 1, `connect hooks: ${backend.describe()}`);
  const ev = await backend.waitForHook('ConnectionStatusEvent', (r) => r.body?.status === 'FAILED', 'ConnectionStatusEvent FAILED');
  assert.equal(ev.body.info, expectedInfo, `ConnectionStatusEvent body: ${show(ev.body)}`);
  assert.equal(ev.body.appKey, 'backendApp');
  assert.equal(ev.body.sessionId, connect[0].body.sessionId, 'FAILED event names the refused session');
  assert.equal(ev.body.nodeId, connect[0].body.nodeId);
  assert.ok(!backend.hooks('ConnectionStatusEvent').some((r) => r.body?.status === 'ESTABLISHED'), `backend hooks: ${backend.describe()}`);
}

e2eTest('connect 403 with {"status":403,"reason":"Bad token"} -> WARN info "Bad token", then DISCONNECTED', async (env) => {
  env.backend.on('connect', () => reply.status(403, '{"status":403,"reason":"Bad token"}', { 'Content-Type': 'application/json' }));
  await expectRejected(env, 'Bad token');
});

e2eTest('connect 403 with a body of another shape -> WARN info is the reason phrase "Forbidden"', async (env) => {
  env.backend.on('connect', () => reply.status(403, '{"status":403,"reason":"Bad token","detail":"x"}', { 'Content-Type': 'application/json' }));
  await expectRejected(env, 'Forbidden');
});

e2eTest('connect checks custom.token: good token -> ESTABLISHED; backend got connect then ConnectionStatusEvent ESTABLISHED', async ({ sdk, session, backend }) => {
  backend.on('connect', (r) =>
    r.body?.custom?.token === 'good-token' ? reply.mirror(r) : reply.status(403, '{"status":403,"reason":"Bad token"}'),
  );
  await session({ appKey: 'backendApp', custom: { token: 'good-token' } });
  const established = await sdk.waitForEvent('ESTABLISHED');
  const names = await sdk.eventNames();
  assert.deepEqual(names, ['CONNECTED', 'ESTABLISHED'], `events: ${show(names)}`);

  const ev = await backend.waitForHook('ConnectionStatusEvent', (r) => r.body?.status === 'ESTABLISHED', 'ConnectionStatusEvent ESTABLISHED');
  const connects = backend.hooks('connect');
  assert.equal(connects.length, 1, `connect hooks: ${backend.describe()}`);
  const connect = connects[0];
  assert.ok(backend.requests.indexOf(connect) < backend.requests.indexOf(ev), `order at the backend: ${backend.describe()}`);

  assert.equal(connect.method, 'POST');
  assert.equal(connect.path, '/hooks/connect');
  assert.match(connect.headers['content-type'] || '', /^application\/json/i, 'hook Content-Type');
  const b = connect.body;
  assert.equal(typeof b.nodeId, 'string', `connect body: ${show(b)}`);
  assert.ok(b.nodeId.length > 0);
  assert.equal(b.appKey, 'backendApp');
  assert.equal(typeof b.sessionId, 'string', `connect body: ${show(b)}`);
  assert.ok(b.sessionId.length > 0);
  assert.deepEqual(b.custom, { token: 'good-token' });

  assert.equal(ev.path, '/hooks/ConnectionStatusEvent');
  assert.equal(ev.body.sessionId, b.sessionId, 'same session in connect and ConnectionStatusEvent');
  assert.equal(ev.body.nodeId, b.nodeId);
  assert.equal(ev.body.appKey, 'backendApp');
  assert.equal(established.payload.sessionId, b.sessionId, 'the page sees the session id the backend saw');
  assert.deepEqual(established.payload.custom, { token: 'good-token' });
});
