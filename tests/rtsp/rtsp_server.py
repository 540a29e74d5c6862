#!/usr/bin/python3
"""A real RTSP server for callgate's tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0) serving a live H.264 test picture at /test on 127.0.0.1.

    rtsp_server.py [--user U --password P] [--keyint N] [--port N] [--audio pcmu|pcma|aac|opus]
                   [--no-video]

Binds an ephemeral port (or --port: a camera that comes back) and prints `PORT <n>` first; then one line per client event, for
the tests to count: `CONNECTED`, `PLAY`, `TEARDOWN`, `CLOSED`. With --user/--password the
mount needs Basic auth (a wrong password gets 401). Runs until killed or stdin closes.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def say(line):
    print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--keyint", type=int, default=10, help="frames between IDRs (15 fps)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--audio", choices=["pcmu", "pcma", "aac", "opus"], help="an audio stream")
    ap.add_argument("--no-video", action="store_true", help="audio only (with --audio)")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    pay = "pay0" if args.no_video else "pay1"
    audio = {
        None: "",
        "pcmu": f"audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name={pay} pt=0",
        "pcma": f"audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name={pay} pt=8",
        "aac": f"audiotestsrc is-live=true ! audioconvert ! voaacenc ! rtpmp4gpay name={pay} pt=97",
        "opus": f"audiotestsrc is-live=true ! audioconvert ! opusenc ! rtpopuspay name={pay} pt=111",
    }[args.audio]
    video = (
        ""
        if args.no_video
        else "videotestsrc is-live=true pattern=ball "
        "! video/x-raw,width=320,height=240,framerate=15/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.keyint} bitrate=300 "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=-1"
    )
    factory.set_launch(f"( {video} {audio} )")
    # One pipeline for every client (a camera), so a second PLAY would show as such.
    factory.set_shared(True)

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)

    server.get_mount_points().add_factory("/test", factory)

    def on_client(_server, client):
        say("CONNECTED")
        client.connect("play-request", lambda *_: say("PLAY"))
        client.connect("teardown-request", lambda *_: say("TEARDOWN"))
        client.connect("closed", lambda *_: say("CLOSED"))

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        say("ERROR cannot attach")
        sys.exit(1)
    say(f"PORT {server.get_bound_port()}")

    loop = GLib.MainLoop()
    # The test's end closes our stdin: stop then (no orphan server).
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_HUP | GLib.IO_IN, lambda *_: loop.quit() or False)
    loop.run()


if __name__ == "__main__":
    main()
