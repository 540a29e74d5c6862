//! The fMP4 (CMAF) boxes of HLS output: the init segment (`ftyp` + `moov` with an `avc1`/`avcC`
//! video track and an `Opus`/`dOps` audio track) and one `moof` + `mdat` per part.
//!
//! Written by hand (ISO/IEC 14496-12, 14496-15 §5.3 for `avcC`, "Encapsulation of Opus in ISO
//! Base Media File Format" for `Opus`/`dOps`), about 250 lines: the crates looked at either write
//! only non-fragmented files (`mp4` 0.14: no `moof`, no Opus) or are general atom codecs whose
//! structs change with each 0.x release (`mp4-atom`); what is needed here is a fixed, small set of
//! boxes with a handful of varying fields, which is easier to check against the specs as plain
//! byte writes (and the tests parse them back).

/// Track ids in the init segment and the fragments.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Timescales: H.264 keeps RTP's 90 kHz, Opus its 48 kHz.
pub const VIDEO_TIMESCALE: u32 = 90_000;
pub const AUDIO_TIMESCALE: u32 = 48_000;

/// `sample_flags` of a sync sample (sample_depends_on = 2: depends on no other).
pub const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample (sample_depends_on = 1, sample_is_non_sync_sample = 1).
pub const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// The video track of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avc {
    pub width: u16,
    pub height: u16,
    /// One SPS and one PPS NAL unit (without start codes or length prefixes).
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
}

/// One sample of a track run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

/// One track's samples in a fragment: their first decode time and their data, back to back.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub track: u32,
    pub base_dts: u64,
    pub samples: Vec<Sample>,
    pub data: Vec<u8>,
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    /// Starts a box; [`W::end`] writes its size.
    fn start(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.0.len();
        self.u32(0);
        self.bytes(kind);
        at
    }
    /// A full box: version and flags after the type.
    fn start_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.start(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        at
    }
    fn end(&mut self, at: usize) {
        let size = u32::try_from(self.0.len() - at).expect("a box under 4 GiB");
        self.0[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }
    fn matrix(&mut self) {
        for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

/// The init segment: `ftyp` and `moov` for `video` and/or an Opus track (48 kHz, stereo).
pub fn init_segment(video: Option<&Avc>, opus: bool) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(1024));
    let ftyp = w.start(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41", b"isom"] {
        w.bytes(brand);
    }
    w.end(ftyp);

    let moov = w.start(b"moov");
    let mvhd = w.start_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1000); // timescale
    w.u32(0); // duration: fragmented
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(2 + 8);
    w.matrix();
    w.zeros(6 * 4); // pre_defined
    w.u32(AUDIO_TRACK + 1); // next_track_ID
    w.end(mvhd);
    if let Some(v) = video {
        trak(&mut w, VIDEO_TRACK, Some(v));
    }
    if opus {
        trak(&mut w, AUDIO_TRACK, None);
    }
    let mvex = w.start(b"mvex");
    for (id, on) in [(VIDEO_TRACK, video.is_some()), (AUDIO_TRACK, opus)] {
        if on {
            let trex = w.start_full(b"trex", 0, 0);
            w.u32(id);
            w.u32(1); // default_sample_description_index
            w.u32(0);
            w.u32(0);
            w.u32(0);
            w.end(trex);
        }
    }
    w.end(mvex);
    w.end(moov);
    w.0
}

/// A `trak`: video when `avc` is given, else Opus audio.
fn trak(w: &mut W, id: u32, avc: Option<&Avc>) {
    let trak = w.start(b"trak");
    let tkhd = w.start_full(b"tkhd", 0, 0x3); // enabled, in movie
    w.u32(0);
    w.u32(0);
    w.u32(id);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if avc.is_some() { 0 } else { 0x0100 }); // volume
    w.u16(0);
    w.matrix();
    let (width, height) = avc.map_or((0, 0), |a| (a.width, a.height));
    w.u32(u32::from(width) << 16);
    w.u32(u32::from(height) << 16);
    w.end(tkhd);

    let mdia = w.start(b"mdia");
    let mdhd = w.start_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(if avc.is_some() { VIDEO_TIMESCALE } else { AUDIO_TIMESCALE });
    w.u32(0);
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.end(mdhd);
    let hdlr = w.start_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if avc.is_some() { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if avc.is_some() { b"VideoHandler\0" } else { b"SoundHandler\0" });
    w.end(hdlr);

    let minf = w.start(b"minf");
    if avc.is_some() {
        let vmhd = w.start_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.end(vmhd);
    } else {
        let smhd = w.start_full(b"smhd", 0, 0);
        w.zeros(4);
        w.end(smhd);
    }
    let dinf = w.start(b"dinf");
    let dref = w.start_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.start_full(b"url ", 0, 1); // self-contained
    w.end(url);
    w.end(dref);
    w.end(dinf);

    let stbl = w.start(b"stbl");
    let stsd = w.start_full(b"stsd", 0, 0);
    w.u32(1);
    match avc {
        Some(a) => avc1(w, a),
        None => opus(w),
    }
    w.end(stsd);
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = w.start_full(kind, 0, 0);
        w.u32(0);
        w.end(b);
    }
    let stsz = w.start_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end(stsz);
    w.end(stbl);
    w.end(minf);
    w.end(mdia);
    w.end(trak);
}

fn avc1(w: &mut W, a: &Avc) {
    let entry = w.start(b"avc1");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved
    w.u16(a.width);
    w.u16(a.height);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
    let avcc = w.start(b"avcC");
    w.u8(1); // configurationVersion
    w.u8(a.sps.get(1).copied().unwrap_or(0x42)); // AVCProfileIndication
    w.u8(a.sps.get(2).copied().unwrap_or(0)); // profile_compatibility
    w.u8(a.sps.get(3).copied().unwrap_or(0x1f)); // AVCLevelIndication
    w.u8(0xff); // lengthSizeMinusOne = 3
    w.u8(0xe1); // one SPS
    w.u16(u16::try_from(a.sps.len()).unwrap_or(u16::MAX));
    w.bytes(&a.sps[..a.sps.len().min(usize::from(u16::MAX))]);
    w.u8(1); // one PPS
    w.u16(u16::try_from(a.pps.len()).unwrap_or(u16::MAX));
    w.bytes(&a.pps[..a.pps.len().min(usize::from(u16::MAX))]);
    w.end(avcc);
    w.end(entry);
}

fn opus(w: &mut W) {
    let entry = w.start(b"Opus");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(2); // channelcount
    w.u16(16); // samplesize
    w.u32(0); // pre_defined, reserved
    w.u32(AUDIO_TIMESCALE << 16); // samplerate 16.16
    let dops = w.start(b"dOps");
    w.u8(0); // Version
    w.u8(2); // OutputChannelCount
    w.u16(0); // PreSkip: WebRTC streams start mid-stream, nothing to skip
    w.u32(AUDIO_TIMESCALE); // InputSampleRate
    w.u16(0); // OutputGain
    w.u8(0); // ChannelMappingFamily: mono/stereo
    w.end(dops);
    w.end(entry);
}

/// One fragment (`moof` + `mdat`) with sequence number `seq` holding `runs` (one per track;
/// empty runs are left out).
pub fn fragment(seq: u32, runs: &[Run]) -> Vec<u8> {
    let runs: Vec<&Run> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let data_len: usize = runs.iter().map(|r| r.data.len()).sum();
    let mut w = W(Vec::with_capacity(256 + data_len));
    let moof = w.start(b"moof");
    let mfhd = w.start_full(b"mfhd", 0, 0);
    w.u32(seq);
    w.end(mfhd);
    let mut offset_fields = Vec::with_capacity(runs.len());
    for r in &runs {
        let traf = w.start(b"traf");
        let tfhd = w.start_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.u32(r.track);
        w.end(tfhd);
        let tfdt = w.start_full(b"tfdt", 1, 0);
        w.u64(r.base_dts);
        w.end(tfdt);
        // data-offset, sample-duration, sample-size, sample-flags present
        let trun = w.start_full(b"trun", 0, 0x000_701);
        w.u32(u32::try_from(r.samples.len()).expect("a part's samples fit in u32"));
        offset_fields.push(w.0.len());
        w.u32(0); // data_offset, patched below
        for s in &r.samples {
            w.u32(s.duration);
            w.u32(s.size);
            w.u32(s.flags);
        }
        w.end(trun);
        w.end(traf);
    }
    w.end(moof);
    let moof_len = w.0.len() - moof;
    let mut offset = moof_len + 8;
    for (field, r) in offset_fields.into_iter().zip(&runs) {
        let v = u32::try_from(offset).expect("a fragment under 4 GiB");
        w.0[field..field + 4].copy_from_slice(&v.to_be_bytes());
        offset += r.data.len();
    }
    let mdat = w.start(b"mdat");
    for r in &runs {
        w.bytes(&r.data);
    }
    w.end(mdat);
    w.0
}

/// The boxes at the top level of `data` (type and body), for tests and checks; `None` when a
/// size runs past the end.
pub fn boxes(mut data: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(data[..4].try_into().ok()?) as usize;
        if size < 8 || size > data.len() {
            return None;
        }
        let kind: [u8; 4] = data[4..8].try_into().ok()?;
        out.push((kind, &data[8..size]));
        data = &data[size..];
    }
    Some(out)
}

/// The body of the first box found along `path` (each step a child of the previous one; a
/// sample entry's children start after its fixed fields: see [`entry_children`]).
pub fn find<'a>(data: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let body = boxes(data)?.into_iter().find(|(k, _)| k == *first)?.1;
    if rest.is_empty() {
        return Some(body);
    }
    let children = match *first {
        b"stsd" => body.get(8..)?,
        b"dref" => body.get(8..)?,
        b"avc1" | b"Opus" => entry_children(first, body)?,
        _ => body,
    };
    find(children, rest)
}

/// Where the child boxes of a sample entry start (after its fixed fields).
pub fn entry_children<'a>(kind: &[u8; 4], body: &'a [u8]) -> Option<&'a [u8]> {
    match kind {
        b"avc1" => body.get(78..),
        b"Opus" => body.get(28..),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc() -> Avc {
        Avc { width: 320, height: 240, sps: vec![0x67, 0x42, 0xc0, 0x1f, 0xda], pps: vec![0x68, 0xce, 0x3c, 0x80] }
    }

    #[test]
    fn init_segment_has_both_tracks_with_their_configs() {
        let init = init_segment(Some(&avc()), true);
        let top: Vec<[u8; 4]> = boxes(&init).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, [*b"ftyp", *b"moov"]);
        let moov = find(&init, &[b"moov"]).unwrap();
        let traks: Vec<_> = boxes(moov).unwrap().into_iter().filter(|(k, _)| k == b"trak").collect();
        assert_eq!(traks.len(), 2);
        let avcc = find(traks[0].1, &[b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"avcC"]).unwrap();
        assert_eq!(&avcc[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
        assert_eq!(&avcc[6..8], &5u16.to_be_bytes());
        assert_eq!(&avcc[8..13], &avc().sps[..]);
        assert_eq!(&avcc[13..], &[1, 0, 4, 0x68, 0xce, 0x3c, 0x80]);
        let avc1 = find(traks[0].1, &[b"mdia", b"minf", b"stbl", b"stsd", b"avc1"]).unwrap();
        assert_eq!(&avc1[24..28], &[0x01, 0x40, 0x00, 0xf0]); // 320 x 240
        let dops = find(traks[1].1, &[b"mdia", b"minf", b"stbl", b"stsd", b"Opus", b"dOps"]).unwrap();
        assert_eq!(dops, &[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let hdlr = find(traks[1].1, &[b"mdia", b"hdlr"]).unwrap();
        assert_eq!(&hdlr[8..12], b"soun");
        let mvex = find(&init, &[b"moov", b"mvex"]).unwrap();
        assert_eq!(boxes(mvex).unwrap().len(), 2);
    }

    #[test]
    fn audio_only_init_has_one_track() {
        let init = init_segment(None, true);
        let moov = find(&init, &[b"moov"]).unwrap();
        assert_eq!(boxes(moov).unwrap().iter().filter(|(k, _)| k == b"trak").count(), 1);
    }

    #[test]
    fn fragment_data_offsets_point_into_mdat() {
        let v = Run {
            track: VIDEO_TRACK,
            base_dts: 9000,
            samples: vec![Sample { duration: 3000, size: 3, flags: FLAGS_SYNC }],
            data: vec![1, 2, 3],
        };
        let a = Run {
            track: AUDIO_TRACK,
            base_dts: 4800,
            samples: vec![Sample { duration: 960, size: 2, flags: FLAGS_SYNC }; 2],
            data: vec![7, 8, 9, 10],
        };
        let empty = Run { track: AUDIO_TRACK, ..Default::default() };
        let f = fragment(5, &[v, a, empty]);
        let top = boxes(&f).unwrap();
        assert_eq!(top[0].0, *b"moof");
        assert_eq!(top[1], (*b"mdat", &[1u8, 2, 3, 7, 8, 9, 10][..]));
        let moof = top[0].1;
        let trafs: Vec<_> = boxes(moof).unwrap().into_iter().filter(|(k, _)| k == b"traf").collect();
        assert_eq!(trafs.len(), 2);
        for (traf, (want_dts, first_byte)) in trafs.iter().zip([(9000u64, 1u8), (4800, 7)]) {
            let tfdt = find(traf.1, &[b"tfdt"]).unwrap();
            assert_eq!(tfdt[0], 1);
            assert_eq!(u64::from_be_bytes(tfdt[4..12].try_into().unwrap()), want_dts);
            let trun = find(traf.1, &[b"trun"]).unwrap();
            let off = u32::from_be_bytes(trun[8..12].try_into().unwrap()) as usize;
            assert_eq!(f[off], first_byte, "data offset from the moof's first byte");
        }
        assert_eq!(find(moof, &[b"mfhd"]).unwrap(), &[0, 0, 0, 0, 0, 0, 0, 5]);
    }
}
