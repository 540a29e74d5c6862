// The REST API's docs page (/rest-api/docs) rendered by Chromium: every operation and schema of
// /rest-api/openapi.json shows, nothing is loaded from anywhere but callgate, no script error.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';

const e2eTest = e2eSuite();

e2eTest('the docs page renders every operation of openapi.json and loads nothing from elsewhere', async ({ callgate, sdk }) => {
  const doc = await (await fetch(`${callgate.httpUrl}/rest-api/openapi.json`)).json();
  const operationIds = [];
  for (const item of Object.values(doc.paths)) {
    for (const op of Object.values(item)) operationIds.push(op.operationId);
  }
  assert.ok(operationIds.length >= 20, `operations: ${operationIds}`);

  const page = sdk.page;
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${callgate.httpUrl}/rest-api/docs`);
  await page.waitForFunction((n) => document.querySelectorAll('#ops .op').length === n, operationIds.length, { timeout: 10_000 });

  for (const id of operationIds) {
    const text = await page.locator(`[id="${id}"]`).innerText();
    assert.ok(text.length > 0, `operation ${id} is rendered`);
  }
  const schemaNames = Object.keys(doc.components.schemas);
  assert.equal(await page.locator('#schemas .op').count(), schemaNames.length);
  const startup = await page.locator('[id="call_startup"]').innerText();
  assert.match(startup, /\/rest-api\/call\/startup/);
  assert.match(startup, /CallStartupRequest/);
  assert.match(startup, /409/);
  assert.equal(await page.locator('#title').innerText(), doc.info.title);
  assert.equal(await page.locator('#error').innerText(), '');
  assert.deepEqual(errors, [], `page errors: ${errors}`);
  const elsewhere = requests.filter((u) => !u.startsWith(callgate.httpUrl));
  assert.deepEqual(elsewhere, [], `requests to elsewhere: ${elsewhere}`);
  assert.ok(requests.includes(`${callgate.httpUrl}/rest-api/openapi.json`), `requests: ${requests}`);
});
