"""Writes one 4:2:0 frame (Y4M) of colour bars with a little deterministic noise and a grey ramp
below them: the picture of the committed VP8 keyframes (make_vp8_keyframes.sh), which the
snapshot tests look for (white bar left, black bar right, yellow second bar, dark-to-light ramp).

Usage: make_bars_y4m.py WIDTH HEIGHT OUT.y4m
"""
import sys
w, h = int(sys.argv[1]), int(sys.argv[2])
out = open(sys.argv[3], "wb")
out.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
out.write(b"FRAME\n")
# Y: eight vertical bars of luma with a horizontal gradient band at the bottom quarter
bars = [235, 210, 170, 145, 106, 81, 41, 16]
y = bytearray()
seed = [1]
for r in range(h):
    for c in range(w):
        if r < h * 3 // 4:
            seed[0] = (seed[0] * 1103515245 + 12345) & 0x7fffffff
            y.append(max(16, min(235, bars[c * 8 // w] + ((seed[0] >> 16) % 9) - 4)))
        else:
            y.append(16 + (c * 219) // (w - 1))
u = bytearray(); v = bytearray()
us = [128, 16, 166, 54, 202, 90, 240, 128]
vs = [128, 146, 16, 34, 222, 240, 110, 128]
for r in range(h // 2):
    for c in range(w // 2):
        if r < h * 3 // 8:
            u.append(us[c * 16 // w]); v.append(vs[c * 16 // w])
        else:
            u.append(128); v.append(128)
out.write(y); out.write(u); out.write(v)
