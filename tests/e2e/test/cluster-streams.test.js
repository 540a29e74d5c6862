// Streams across nodes (docs/cluster.md "Streams across nodes") with the official SDK: three
// callgate binaries in one NATS cluster (nats-server -js started here, ephemeral port, own
// storage directory); a page publishes on node A, pages on B and C play the stream and decode
// its frames; A's unpublish stops them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { startCallgate } from '../lib/callgate.js';
import { e2eSuite } from '../lib/fixture.js';
import { establish, mediaFacts, play, publish, stopStream, waitStatus } from '../lib/streams.js';
import { canConnect, freePort, show, sleep, waitFor } from '../lib/util.js';

const NATS_BIN = process.env.NATS_SERVER_BIN || '/usr/sbin/nats-server';
const natsPort = await freePort();
const natsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'callgate-e2e-nats-'));
let nats;

before(async () => {
  nats = spawn(NATS_BIN, ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', natsDir], { stdio: 'ignore' });
  await waitFor(() => canConnect(natsPort), { what: `nats-server listening on 127.0.0.1:${natsPort}` });
});
after(() => {
  nats?.kill('SIGKILL');
  fs.rmSync(natsDir, { recursive: true, force: true });
});

const clusterToml = `[cluster]\nnats_url = "nats://127.0.0.1:${natsPort}"\nheartbeat_ms = 200\nlease_ms = 3000\n`;
const e2eTest = e2eSuite();

/** Waits until `node`'s directory shows `name` published (on another node). */
async function listed(node, name) {
  await waitFor(
    async () => {
      const r = await fetch(`${node.httpUrl}/rest-api/stream/find`, { method: 'POST', body: JSON.stringify({ name, published: true }) });
      return r.status === 200 && (await r.json()).length === 1;
    },
    { what: `${name} in the directory of ${node.httpUrl}` },
  );
}

e2eTest(
  'published on node A, played on nodes B and C with decoded frames; unpublish on A stops both',
  async (env) => {
    const { sdk, callgate: a, backend } = env;
    const others = [];
    try {
      for (let i = 0; i < 2; i++) {
        others.push(await startCallgate({ apps: { backendApp: backend.url }, extraToml: clusterToml }));
      }
      const [b, c] = others;
      await establish(sdk, a, { appKey: 'backendApp' });
      const pubId = await publish(sdk, 'xcam');
      await waitStatus(sdk, pubId, 'PUBLISHING');
      const viewers = [];
      for (const node of [b, c]) {
        await listed(node, 'xcam');
        const page = await env.newPage();
        await establish(page, node, { appKey: 'backendApp' });
        const id = await play(page, 'xcam');
        await waitStatus(page, id, 'PLAYING');
        viewers.push({ page, id, node });
      }
      for (const { page, id, node } of viewers) {
        const first = await waitFor(
          async () => {
            const f = await mediaFacts(page, id);
            const t = await page.page.evaluate((id) => document.getElementById(id)?.currentTime ?? 0, id);
            return f.videoWidth > 0 && f.videoFramesDecoded > 0 ? { ...f, t } : null;
          },
          { what: `decoded video on the player at ${node.httpUrl}`, seen: () => mediaFacts(page, id), timeout: 20_000 },
        );
        await sleep(1000);
        const later = await mediaFacts(page, id);
        const t = await page.page.evaluate((id) => document.getElementById(id)?.currentTime ?? 0, id);
        assert.ok(later.videoFramesDecoded > first.videoFramesDecoded, `decoded frames rise: ${show([first, later])}`);
        assert.ok(t > first.t, `currentTime advances: ${first.t} -> ${t}`);
        assert.ok(later.audioPackets > first.audioPackets, `audio packets rise: ${show([first, later])}`);
      }

      await stopStream(sdk, pubId);
      await waitStatus(sdk, pubId, 'UNPUBLISHED');
      for (const { page, id } of viewers) {
        const stopped = await waitStatus(page, id, 'STOPPED');
        assert.equal(stopped.info, 'Stopped by publisher stop');
      }
    } catch (err) {
      for (const [i, node] of others.entries()) console.error(`--- node ${i + 1} output (last 6000 chars):\n${node.log().slice(-6000)}`);
      throw err;
    } finally {
      for (const node of others) await node.stop();
    }
  },
  { timeout: 90_000, callgate: { extraToml: clusterToml } },
);
