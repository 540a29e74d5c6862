// Session lifecycle with the unmodified SDK: EchoApp accept, disconnect and its hook.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { show, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

e2eTest('default EchoApp: createSession -> CONNECTED then ESTABLISHED with authToken and sessionId', async ({ sdk, session, backend }) => {
  await session({ custom: { foo: 1 } });
  const established = await sdk.waitForEvent('ESTABLISHED');
  const names = await sdk.eventNames();
  assert.deepEqual(names.slice(0, 2), ['CONNECTED', 'ESTABLISHED'], `event order: ${show(names)}`);
  assert.ok(!names.includes('WARN') && !names.includes('FAILED') && !names.includes('DISCONNECTED'), `unexpected events: ${show(names)}`);

  const p = established.payload;
  assert.ok(p && typeof p === 'object', `ESTABLISHED payload: ${show(p)}`);
  assert.equal(typeof p.authToken, 'string', `authToken in ${show(p)}`);
  assert.ok(p.authToken.length > 0, 'authToken is empty');
  assert.equal(typeof p.sessionId, 'string', `sessionId in ${show(p)}`);
  assert.ok(p.sessionId.length > 0, 'sessionId is empty');
  // The connection object comes back enriched (client-protocol.md §2.3).
  assert.equal(p.appKey, 'defaultApp');
  assert.deepEqual(p.custom, { foo: 1 });
  assert.equal(await sdk.sessionStatus(), 'ESTABLISHED');
  // defaultApp is answered by the built-in EchoApp: the recording backend hears nothing.
  assert.equal(backend.requests.length, 0, `backend got requests: ${backend.describe()}`);
});

e2eTest('session.disconnect() -> DISCONNECTED in the page and ConnectionStatusEvent DISCONNECTED at the backend', async ({ sdk, session, backend, callgate }) => {
  await session({ appKey: 'backendApp', custom: { token: 't' } });
  const established = await sdk.waitForEvent('ESTABLISHED');
  const sessionId = established.payload.sessionId;
  await backend.waitForHook('ConnectionStatusEvent', (r) => r.body?.status === 'ESTABLISHED', 'ConnectionStatusEvent ESTABLISHED');

  await sdk.disconnect();
  await sdk.waitForEvent('DISCONNECTED');
  const names = await sdk.eventNames();
  assert.deepEqual(names, ['CONNECTED', 'ESTABLISHED', 'DISCONNECTED'], `events: ${show(names)}`);

  const ev = await backend.waitForHook('ConnectionStatusEvent', (r) => r.body?.status === 'DISCONNECTED', 'ConnectionStatusEvent DISCONNECTED');
  assert.equal(ev.body.sessionId, sessionId, 'DISCONNECTED event is for the session that was established');
  assert.equal(ev.body.appKey, 'backendApp');
  assert.equal(typeof ev.body.nodeId, 'string');
  const cse = backend.hooks('ConnectionStatusEvent').map((r) => r.body.status);
  assert.deepEqual(cse, ['ESTABLISHED', 'DISCONNECTED'], `ConnectionStatusEvent statuses at the backend: ${show(cse)}`);

  // The session is gone from the REST API as well.
  await waitFor(
    async () => {
      const r = await fetch(`${callgate.httpUrl}/rest-api/connection/find_all`, { method: 'POST' });
      if (r.status === 404) return true;
      const list = await r.json();
      return Array.isArray(list) && !list.some((c) => c.sessionId === sessionId);
    },
    { what: 'the disconnected session to leave /rest-api/connection/find_all' },
  );
});
