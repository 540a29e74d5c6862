#!/usr/bin/python3
"""Makes gop-320x240.h264: 50 frames of colour bars (1 s at 50 fps), H.264 Constrained Baseline
in Annex B, one IDR (with SPS/PPS in front) and 49 P-frames, one slice per frame, no B-frames,
encoded by x264 through GStreamer (Debian: gstreamer1.0-plugins-ugly, python3-gi; run once,
the output is committed). A closed GOP, so a sender may loop it or jump back to its IDR when
asked for a keyframe (tests/src/webrtc.rs `FakeBrowser::publisher_real_h264`)."""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gop-320x240.h264")
pipeline = Gst.parse_launch(
    "videotestsrc num-buffers=50 pattern=smpte ! video/x-raw,width=320,height=240,framerate=50/1 "
    "! x264enc key-int-max=50 bframes=0 threads=1 speed-preset=ultrafast tune=zerolatency "
    "bitrate=300 aud=false byte-stream=true "
    "! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au "
    f"! filesink location={out}"
)
pipeline.set_state(Gst.State.PLAYING)
msg = pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
if msg.type == Gst.MessageType.ERROR:
    sys.exit(f"gstreamer: {msg.parse_error()}")
print(out, os.path.getsize(out), "bytes")
