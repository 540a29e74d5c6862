// Driving SDK streams in a page: publish/play into a display div, record every STREAM_STATUS
// and STREAM_EVENT per stream in window.__e2e.streams[mediaSessionId], read media facts
// (video element size, inbound RTP bytes from the peer connection's getStats).
import { waitFor } from './util.js';

/** Opens an ESTABLISHED session in `sdk` (an SdkPage) against callgate. */
export async function establish(sdk, callgate, opts = {}) {
  await sdk.createSession({ urlServer: callgate.wsUrl, ...opts });
  return sdk.waitForEvent('ESTABLISHED');
}

/**
 * session.createStream({name, display, ...options}) then stream.publish() or stream.play().
 * Returns the stream's mediaSessionId (= stream.id(); for players also the <video> element id).
 */
export function startStream(sdk, action, name, options = {}) {
  return sdk.page.evaluate(
    ({ action, name, options }) => {
      const e2e = window.__e2e;
      e2e.streams = e2e.streams || {};
      const display = document.createElement('div');
      display.style.width = '320px';
      display.style.height = '240px';
      document.body.appendChild(display);
      const stream = e2e.session.createStream({ name, display, cacheLocalResources: false, ...options });
      const rec = { stream, events: [], streamEvents: [] };
      e2e.streams[stream.id()] = rec;
      const S = Flashphoner.constants.STREAM_STATUS;
      for (const status of new Set(Object.values(S))) {
        stream.on(status, (s) => rec.events.push({ status, info: s.getInfo() ?? null, at: Date.now() }));
      }
      stream.on(Flashphoner.constants.STREAM_EVENT, (ev) => rec.streamEvents.push(JSON.parse(JSON.stringify(ev))));
      if (action === 'publish') stream.publish();
      else stream.play();
      return stream.id();
    },
    { action, name, options },
  );
}

export const publish = (sdk, name, options) => startStream(sdk, 'publish', name, options);
export const play = (sdk, name, options) => startStream(sdk, 'play', name, options);

/** The statuses the stream went through: [{status, info}]. */
export function streamEvents(sdk, id) {
  return sdk.page.evaluate((id) => {
    const r = window.__e2e.streams?.[id];
    return r ? { events: r.events.map(({ status, info }) => ({ status, info })), streamEvents: r.streamEvents } : null;
  }, id);
}

/** Waits for the stream `id` to reach `status` (optionally with `info`); returns that event. */
export function waitStatus(sdk, id, status, info) {
  return waitFor(
    async () => (await streamEvents(sdk, id))?.events.find((e) => e.status === status && (info === undefined || e.info === info)),
    { what: `stream ${id} status ${status}${info === undefined ? '' : ` with info "${info}"`}`, seen: () => streamEvents(sdk, id) },
  );
}

/** Waits for a STREAM_EVENT on stream `id` whose object satisfies `pred`. */
export function waitStreamEvent(sdk, id, pred = () => true) {
  return waitFor(async () => (await streamEvents(sdk, id))?.streamEvents.find(pred), {
    what: `a STREAM_EVENT on stream ${id}`,
    seen: () => streamEvents(sdk, id),
  });
}

/** stream.stop(): the SDK sends unPublishStream for a publisher, stopStream for a player. */
export function stopStream(sdk, id) {
  return sdk.page.evaluate((id) => window.__e2e.streams[id].stream.stop(), id);
}

/** publisher stream.sendData(payload): a `sendStreamEvent` of type "data". */
export function sendStreamData(sdk, id, payload) {
  return sdk.page.evaluate(({ id, payload }) => window.__e2e.streams[id].stream.sendData(payload), { id, payload });
}

/** stream.available() for `name`: {outcome:'resolved'|'rejected', info}. */
export function available(sdk, name) {
  return sdk.page.evaluate(
    (name) =>
      new Promise((resolve) => {
        const display = document.createElement('div');
        const s = window.__e2e.session.createStream({ name, display });
        const timer = setTimeout(() => resolve({ outcome: 'timeout' }), 10_000);
        s.available().then(
          (x) => (clearTimeout(timer), resolve({ outcome: 'resolved', info: x?.getInfo?.() ?? null })),
          (x) => (clearTimeout(timer), resolve({ outcome: 'rejected', info: x?.getInfo?.() ?? null })),
        );
      }),
    name,
  );
}

/**
 * Media facts of a player stream: the <video id=mediaSessionId> size and the inbound RTP bytes
 * (sum over inbound-rtp reports of the native getStats of its RTCPeerConnection).
 */
export function mediaFacts(sdk, id) {
  return sdk.page.evaluate(
    (id) =>
      new Promise((resolve) => {
        const v = document.getElementById(id);
        const facts = {
          videoWidth: v?.videoWidth ?? 0,
          videoHeight: v?.videoHeight ?? 0,
          bytesReceived: 0,
          packetsReceived: 0,
          audioPackets: 0,
          // Samples the audio decoder produced from received packets (concealment left out).
          audioDecodedSamples: 0,
          videoFramesDecoded: 0,
        };
        const rec = window.__e2e.streams?.[id];
        const timer = setTimeout(() => resolve({ ...facts, stats: 'timeout' }), 3000);
        try {
          rec.stream.getStats((raw) => {
            clearTimeout(timer);
            for (const r of raw['inbound-rtp'] || []) {
              facts.bytesReceived += r.bytesReceived || 0;
              facts.packetsReceived += r.packetsReceived || 0;
              if (r.kind === 'audio') {
                facts.audioPackets += r.packetsReceived || 0;
                facts.audioDecodedSamples += (r.totalSamplesReceived || 0) - (r.concealedSamples || 0);
              } else if (r.kind === 'video') {
                facts.videoFramesDecoded += r.framesDecoded || 0;
              }
            }
            resolve(facts);
          }, true);
        } catch (e) {
          clearTimeout(timer);
          resolve({ ...facts, stats: String(e) });
        }
      }),
    id,
  );
}
