// Data in both directions: sendData -> OnDataEvent/DataStatusEvent, and REST /data/send -> APP_DATA.
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import { show } from '../lib/util.js';

const e2eTest = e2eSuite();

e2eTest('sendData({x:1}) -> ACCEPTED; backend got OnDataEvent then DataStatusEvent ACCEPTED', async ({ sdk, session, backend }) => {
  await session({ appKey: 'backendApp' });
  const established = await sdk.waitForEvent('ESTABLISHED');
  const r = await sdk.sendData({ x: 1 });
  assert.equal(r.outcome, 'resolved', `sendData promise: ${show(r)}`);
  assert.equal(r.value?.status, 'ACCEPTED', `resolved with ${show(r.value)}`);

  const onData = await backend.waitForHook('OnDataEvent');
  assert.deepEqual(onData.body.payload, { x: 1 }, `OnDataEvent body: ${show(onData.body)}`);
  assert.equal(typeof onData.body.operationId, 'string', `OnDataEvent body: ${show(onData.body)}`);
  assert.ok(onData.body.operationId.length > 0);
  assert.equal(onData.body.sessionId, established.payload.sessionId);
  assert.equal(onData.body.appKey, 'backendApp');

  const status = await backend.waitForHook('DataStatusEvent', (x) => x.body?.operationId === onData.body.operationId, 'DataStatusEvent for the same operationId');
  assert.equal(status.body.status, 'ACCEPTED', `DataStatusEvent body: ${show(status.body)}`);
  assert.ok(backend.requests.indexOf(onData) < backend.requests.indexOf(status), `order: ${backend.describe()}`);
  assert.equal(backend.hooks('OnDataEvent').length, 1, `OnDataEvent hooks: ${backend.describe()}`);
});

e2eTest('OnDataEvent 403 with restOnError FAIL -> sendData rejects {status:"FAILED", info:"Forbidden"}', async ({ sdk, session, backend }) => {
  backend.on('connect', (r) =>
    reply.json(200, { ...r.body, restClientConfig: { OnDataEvent: { restOnError: 'FAIL' } } }),
  );
  backend.on('OnDataEvent', () => reply.json(403, { error: 'denied' }));
  await session({ appKey: 'backendApp' });
  await sdk.waitForEvent('ESTABLISHED');
  const r = await sdk.sendData({ x: 1 });
  assert.equal(r.outcome, 'rejected', `sendData promise: ${show(r)}`);
  assert.equal(r.value?.status, 'FAILED', `rejected with ${show(r.value)}`);
  assert.equal(r.value?.info, 'Forbidden', `rejected with ${show(r.value)}`);

  const onData = await backend.waitForHook('OnDataEvent');
  assert.deepEqual(onData.body.payload, { x: 1 });
  const status = await backend.waitForHook('DataStatusEvent', (x) => x.body?.operationId === onData.body.operationId, 'DataStatusEvent for the same operationId');
  assert.equal(status.body.status, 'FAILED', `DataStatusEvent body: ${show(status.body)}`);
  assert.equal(status.body.info, 'Forbidden', `DataStatusEvent body: ${show(status.body)}`);
  // The session itself stays up.
  assert.equal(await sdk.sessionStatus(), 'ESTABLISHED');
});

e2eTest('OnDataEvent 403 under the default restOnError LOG -> sendData still ACCEPTED', async ({ sdk, session, backend }) => {
  backend.on('OnDataEvent', () => reply.json(403, { error: 'denied' }));
  await session({ appKey: 'backendApp' });
  await sdk.waitForEvent('ESTABLISHED');
  const r = await sdk.sendData({ x: 1 });
  assert.equal(r.outcome, 'resolved', `sendData promise: ${show(r)}`);
  assert.equal(r.value?.status, 'ACCEPTED', `resolved with ${show(r.value)}`);
  const onData = await backend.waitForHook('OnDataEvent');
  const status = await backend.waitForHook('DataStatusEvent', (x) => x.body?.operationId === onData.body.operationId, 'DataStatusEvent for the same operationId');
  assert.equal(status.body.status, 'ACCEPTED', `DataStatusEvent body: ${show(status.body)}`);
});

e2eTest('REST /rest-api/data/send -> APP_DATA in the page with payload.message "hello"', async ({ sdk, session, callgate }) => {
  await session({});
  const established = await sdk.waitForEvent('ESTABLISHED');

  const found = await fetch(`${callgate.httpUrl}/rest-api/connection/find_all`, { method: 'POST' });
  assert.equal(found.status, 200, `find_all status ${found.status}: ${await found.clone().text()}`);
  const list = await found.json();
  assert.ok(Array.isArray(list), `find_all answer: ${show(list)}`);
  assert.equal(list.length, 1, `find_all answer: ${show(list)}`);
  const sessionId = list[0].sessionId;
  assert.equal(typeof sessionId, 'string', `find_all answer: ${show(list)}`);
  assert.equal(sessionId, established.payload.sessionId, 'find_all lists the page\'s session');

  const sent = await fetch(`${callgate.httpUrl}/rest-api/data/send`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sessionId, operationId: 'op1', payload: { message: 'hello' } }),
  });
  assert.equal(sent.status, 200, `data/send status ${sent.status}: ${await sent.clone().text()}`);

  const appData = await sdk.waitForEvent('APP_DATA', (p) => p?.payload?.message === 'hello', 'APP_DATA with payload.message "hello"');
  assert.deepEqual(appData.payload.payload, { message: 'hello' });
  assert.equal(appData.payload.operationId, 'op1', `APP_DATA: ${show(appData.payload)}`);
  assert.equal(appData.payload.sessionId, sessionId, `APP_DATA: ${show(appData.payload)}`);
});
