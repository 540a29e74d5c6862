#!/usr/bin/env python3
"""Writes a pcap of one RTP stream of PCMU (G.711 u-law, payload type 0, 8 kHz, 20 ms packets)
carrying a sine tone, for sipp's `<exec play_pcap_audio="..."/>` (tests/sipp/uas_answer_play_pcap.xml.in).

sipp replays the UDP payloads with the capture's timing from its media port to the RTP address of
the SDP it received; the addresses and ports written here are placeholders it replaces.
Generated on demand by the tests (no binary fixture): standard library only.

Usage: pcmu_pcap.py OUT.pcap [--seconds S] [--hz F]
"""

import argparse
import math
import struct


def ulaw(sample):
    """ITU-T G.711 u-law of one 16-bit linear sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hz", type=float, default=440.0)
    a = ap.parse_args()
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    sport, dport, ssrc = 6000, 7000, 0x5EED1234
    packets = int(a.seconds * 50)
    with open(a.out, "wb") as f:
        # pcap global header: magic, v2.4, UTC, accuracy, snaplen, linktype 1 (Ethernet).
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(packets):
            payload = bytes(
                ulaw(int(12000 * math.sin(2 * math.pi * a.hz * (n * 160 + i) / 8000))) for i in range(160)
            )
            rtp = struct.pack("!BBHII", 0x80, (0x80 if n == 0 else 0) | 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, ssrc)
            udp_len = 8 + len(rtp) + len(payload)
            udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + rtp + payload
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, n & 0xFFFF, 0x4000, 64, 17, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
            frame = eth + ip + udp
            t = n * 0.02
            f.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)) % 1000000, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    main()
