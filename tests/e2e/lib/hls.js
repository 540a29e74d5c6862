// An HLS player in a test page: hls.js (served by static-server.js from node_modules) playing a
// playlist into a <video>; every hls.js ERROR and the main milestones are recorded in
// window.__hls, media facts read from the <video> element.

/** Adds hls.js to `sdk` (an SdkPage of the static server) and waits for window.Hls. */
export async function loadHlsJs(sdk) {
  await sdk.page.addScriptTag({ url: '/hls.min.js' });
  await sdk.page.waitForFunction(() => typeof window.Hls === 'function', null, { timeout: 10_000 });
  return sdk.page.evaluate(() => ({
    version: window.Hls.version,
    supported: window.Hls.isSupported(),
    // What MSE in this Chromium takes of callgate's HLS (H.264 + Opus in fMP4).
    avc1: MediaSource.isTypeSupported('video/mp4; codecs="avc1.42e01f"'),
    opus: MediaSource.isTypeSupported('audio/mp4; codecs="opus"'),
  }));
}

/**
 * new Hls(config) on a new <video id=`id`> (muted, autoplay), loadSource(url), play().
 * Recorded in window.__hls[id]: events [{event, ...}] (MANIFEST_PARSED, LEVEL_LOADED,
 * FRAG_BUFFERED count) and errors [{type, details, fatal, code, text}].
 */
export function playHls(sdk, id, url, config = {}) {
  return sdk.page.evaluate(
    ({ id, url, config }) => {
      const all = (window.__hls = window.__hls || {});
      const video = document.createElement('video');
      video.id = id;
      video.muted = true;
      video.autoplay = true;
      video.playsInline = true;
      video.style.width = '320px';
      video.style.height = '240px';
      document.body.appendChild(video);
      const hls = new Hls({ lowLatencyMode: true, ...config });
      const rec = { hls, video, events: [], errors: [], fragsBuffered: 0, playError: null };
      all[id] = rec;
      const E = Hls.Events;
      hls.on(E.MANIFEST_PARSED, (_, d) => rec.events.push({ event: 'MANIFEST_PARSED', levels: d.levels.length, at: Date.now() }));
      hls.on(E.LEVEL_LOADED, (_, d) => {
        if (!rec.events.some((e) => e.event === 'LEVEL_LOADED')) {
          rec.events.push({ event: 'LEVEL_LOADED', live: d.details.live, fragments: d.details.fragments.length, at: Date.now() });
        }
      });
      hls.on(E.FRAG_BUFFERED, () => rec.fragsBuffered++);
      hls.on(E.ERROR, (_, d) =>
        rec.errors.push({
          type: d.type,
          details: d.details,
          fatal: !!d.fatal,
          code: d.response?.code ?? d.networkDetails?.status ?? null,
          text: typeof d.response?.text === 'string' ? d.response.text : (d.networkDetails?.responseText ?? null),
          url: d.url ?? d.context?.url ?? null,
          reason: d.reason ?? d.error?.message ?? null,
        }),
      );
      hls.attachMedia(video);
      hls.loadSource(url);
      video.play().catch((e) => (rec.playError = String(e)));
    },
    { id, url, config },
  );
}

/** The <video>'s playback facts and what hls.js recorded for player `id`. */
export function hlsFacts(sdk, id) {
  return sdk.page.evaluate((id) => {
    const rec = window.__hls?.[id];
    if (!rec) return null;
    const v = rec.video;
    const q = v.getVideoPlaybackQuality();
    return {
      currentTime: v.currentTime,
      totalVideoFrames: q.totalVideoFrames,
      droppedVideoFrames: q.droppedVideoFrames,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      readyState: v.readyState,
      paused: v.paused,
      mediaError: v.error ? { code: v.error.code, message: v.error.message } : null,
      audioTracks: rec.hls.audioTracks?.length ?? 0,
      fragsBuffered: rec.fragsBuffered,
      events: rec.events.map(({ at, ...e }) => e),
      errors: rec.errors,
      playError: rec.playError,
    };
  }, id);
}

/** hls.destroy() for player `id`. */
export function stopHls(sdk, id) {
  return sdk.page.evaluate((id) => window.__hls?.[id]?.hls.destroy(), id);
}
