#!/bin/sh
# Makes keyframe-320x240.vp8 and keyframe-640x480.vp8: one real VP8 keyframe each (RFC 6386
# frame: frame tag, start code 9d 01 2a, size, partitions), encoded by libvpx's vpxenc
# (Debian: apt-get install vpx-tools; run once, the outputs are committed) from a colour-bar
# picture with a little noise (make_bars_y4m.py), and cut out of vpxenc's IVF container.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
for s in 320x240 640x480; do
    w=${s%x*}; h=${s#*x}
    python3 make_bars_y4m.py "$w" "$h" "$tmp/bars.y4m"
    vpxenc --codec=vp8 --ivf --limit=1 --min-q=8 --max-q=63 --target-bitrate=1000 -o "$tmp/kf.ivf" "$tmp/bars.y4m"
    # IVF: a file header (its length at bytes 6-7), then per frame 4 bytes of size and 8 of pts.
    python3 -c "
import struct, sys
d = open(sys.argv[1], 'rb').read()
hl = struct.unpack('<H', d[6:8])[0]
n = struct.unpack('<I', d[hl:hl + 4])[0]
open(sys.argv[2], 'wb').write(d[hl + 12:hl + 12 + n])" "$tmp/kf.ivf" "keyframe-$s.vp8"
done
rm -r "$tmp"
