//! AAC -> Opus, for pulled sources: an RTSP camera's AAC audio, which browsers do not decode over
//! WebRTC, becomes the Opus every browser does. AAC-LC (mono or stereo, 1024-sample frames, the
//! AudioSpecificConfig from the camera's SDP) is decoded by symphonia's pure-Rust decoder; a rate
//! libopus does not take (44.1, 32, 22.05 kHz...) is resampled to 48 kHz by rubato's FFT
//! resampler; libopus (the `opus` crate) encodes 20 ms frames. No crate does this chain whole;
//! the glue (buffering whole chunks and frames between the three) is what this file is.
//!
//! The cost, per second of a camera's audio: 43 AAC frames decoded, 50 Opus frames encoded
//! (about a millisecond of CPU each way on these machines), done in the pull's task.

use opus::{Application, Bitrate, Channels};
use rubato::{FftFixedIn, Resampler};
use symphonia_core::audio::SampleBuffer;
use symphonia_core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_AAC};
use symphonia_core::formats::Packet;

/// The sample rates libopus encodes from directly.
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Opus's RTP clock (RFC 7587): 48 kHz whatever the encoder's input rate.
pub const OPUS_CLOCK: u32 = 48_000;

/// RTP timestamp units of one output frame (20 ms at [`OPUS_CLOCK`]).
pub const OPUS_FRAME_TICKS: u32 = 960;

/// The Opus bitrate (mono or stereo): camera audio is speech or ambience.
const BITRATE: i32 = 64_000;

/// Why a camera's AAC cannot be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("AAC configuration not supported ({0}): AAC-LC, mono or stereo only")]
    Config(String),
    #[error("AAC frame not decoded: {0}")]
    Decode(String),
    #[error("Opus encoder: {0}")]
    Encode(String),
    #[error("resampler: {0}")]
    Resample(String),
}

/// One camera's AAC stream to 20 ms Opus packets.
pub struct AacToOpus {
    decoder: symphonia_codec_aac::AacDecoder,
    channels: usize,
    /// To 48 kHz, when the camera's rate is not one libopus takes.
    resampler: Option<FftFixedIn<f32>>,
    /// Samples per channel waiting for a whole resampler chunk.
    to_resample: Vec<Vec<f32>>,
    /// Samples per channel at the encoder's rate, waiting for a whole 20 ms frame.
    to_encode: Vec<Vec<f32>>,
    /// Samples per channel in one 20 ms frame at the encoder's rate.
    frame: usize,
    encoder: opus::Encoder,
    frames_in: u64,
}

impl AacToOpus {
    /// `config`: the stream's AudioSpecificConfig (ISO 14496-3 §1.6.2.1, the SDP's
    /// `config=` of `mpeg4-generic`).
    pub fn new(config: &[u8]) -> Result<AacToOpus, TranscodeError> {
        let (decoder, rate, channels) = decoder_for(config)?;
        let (enc_rate, resampler) = if OPUS_RATES.contains(&rate) {
            (rate, None)
        } else {
            let r = FftFixedIn::<f32>::new(rate as usize, OPUS_CLOCK as usize, 1024, 2, channels)
                .map_err(|e| TranscodeError::Resample(e.to_string()))?;
            (OPUS_CLOCK, Some(r))
        };
        let ch = if channels == 1 { Channels::Mono } else { Channels::Stereo };
        let mut encoder =
            opus::Encoder::new(enc_rate, ch, Application::Audio).map_err(|e| TranscodeError::Encode(e.to_string()))?;
        encoder.set_bitrate(Bitrate::Bits(BITRATE)).map_err(|e| TranscodeError::Encode(e.to_string()))?;
        Ok(AacToOpus {
            decoder,
            channels,
            resampler,
            to_resample: vec![Vec::new(); channels],
            to_encode: vec![Vec::new(); channels],
            frame: (enc_rate / 50) as usize,
            encoder,
            frames_in: 0,
        })
    }

    /// Output channels (as the camera's).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// One AAC access unit (raw, no ADTS header) in; the 20 ms Opus packets it completes out,
    /// in order. A frame that does not decode is an `Err` and changes nothing (the caller skips
    /// it: the output then has a gap, as for a lost packet).
    pub fn push(&mut self, au: &[u8]) -> Result<Vec<Vec<u8>>, TranscodeError> {
        let packet = Packet::new_from_slice(0, self.frames_in * 1024, 1024, au);
        self.frames_in += 1;
        let decoded = self.decoder.decode(&packet).map_err(|e| TranscodeError::Decode(e.to_string()))?;
        let frames = decoded.frames();
        let mut planar = SampleBuffer::<f32>::new(frames as u64, *decoded.spec());
        planar.copy_planar_ref(decoded);
        let samples = planar.samples();
        let got = samples.len() / self.channels.max(1);
        match &mut self.resampler {
            None => {
                for (c, out) in self.to_encode.iter_mut().enumerate() {
                    out.extend_from_slice(&samples[c * got..(c + 1) * got]);
                }
            }
            Some(r) => {
                for (c, out) in self.to_resample.iter_mut().enumerate() {
                    out.extend_from_slice(&samples[c * got..(c + 1) * got]);
                }
                while self.to_resample[0].len() >= r.input_frames_next() {
                    let n = r.input_frames_next();
                    let chunk: Vec<&[f32]> = self.to_resample.iter().map(|v| &v[..n]).collect();
                    let out = r.process(&chunk, None).map_err(|e| TranscodeError::Resample(e.to_string()))?;
                    for (c, o) in out.iter().enumerate() {
                        self.to_encode[c].extend_from_slice(o);
                        self.to_resample[c].drain(..n);
                    }
                }
            }
        }
        let mut packets = Vec::new();
        let mut interleaved = vec![0f32; self.frame * self.channels];
        let mut buf = vec![0u8; 1500];
        while self.to_encode[0].len() >= self.frame {
            for i in 0..self.frame {
                for c in 0..self.channels {
                    interleaved[i * self.channels + c] = self.to_encode[c][i];
                }
            }
            for ch in &mut self.to_encode {
                ch.drain(..self.frame);
            }
            let n =
                self.encoder.encode_float(&interleaved, &mut buf).map_err(|e| TranscodeError::Encode(e.to_string()))?;
            packets.push(buf[..n].to_vec());
        }
        Ok(packets)
    }
}

/// Whether [`AacToOpus::new`] takes this AudioSpecificConfig: only the decoder is made (the
/// resampler and the encoder are left for the stream that is set up).
pub fn supports(config: &[u8]) -> bool {
    decoder_for(config).is_ok()
}

/// The AAC decoder of an AudioSpecificConfig, with its rate and channels.
fn decoder_for(config: &[u8]) -> Result<(symphonia_codec_aac::AacDecoder, u32, usize), TranscodeError> {
    let mut params = CodecParameters::new();
    params.for_codec(CODEC_TYPE_AAC).with_extra_data(config.to_vec().into_boxed_slice());
    let decoder = symphonia_codec_aac::AacDecoder::try_new(&params, &DecoderOptions::default())
        .map_err(|e| TranscodeError::Config(e.to_string()))?;
    let (rate, channels) = asc_rate_channels(config).ok_or_else(|| TranscodeError::Config("unreadable".into()))?;
    if !(1..=2).contains(&channels) {
        return Err(TranscodeError::Config(format!("{channels} channels")));
    }
    Ok((decoder, rate, channels))
}

/// The sampling rate and channel count of an AudioSpecificConfig (ISO 14496-3 §1.6.2.1):
/// 5 bits object type, 4 bits rate index (15: 24 bits of rate follow), 4 bits channel config.
pub fn asc_rate_channels(asc: &[u8]) -> Option<(u32, usize)> {
    const RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];
    if asc.len() < 2 {
        return None;
    }
    let n = asc.len().min(6);
    let bits = asc[..n].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) << (8 * (8 - n));
    let bit = |from: u32, n: u32| ((bits >> (64 - from - n)) & ((1 << n) - 1)) as u32;
    let mut at = 5;
    if bit(0, 5) == 31 {
        at += 6; // an escaped object type
    }
    let index = bit(at, 4);
    at += 4;
    let rate = if index == 15 {
        if asc.len() < 5 {
            return None;
        }
        let r = bit(at, 24);
        at += 24;
        r
    } else {
        *RATES.get(index as usize)?
    };
    if asc.len() * 8 < (at + 4) as usize {
        return None;
    }
    Some((rate, bit(at, 4) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_specific_configs_are_read() {
        // AAC-LC 44.1 kHz stereo, 48 kHz mono, 16 kHz mono.
        assert_eq!(asc_rate_channels(&[0x12, 0x10]), Some((44_100, 2)));
        assert_eq!(asc_rate_channels(&[0x11, 0x88]), Some((48_000, 1)));
        assert_eq!(asc_rate_channels(&[0x14, 0x08]), Some((16_000, 1)));
        // An explicit rate (index 15): 2 + 15 + 24 bits of 44100 + channels 1.
        let explicit = {
            let v: u64 = (2u64 << 59) | (15u64 << 55) | (44_100u64 << 31) | (1u64 << 27);
            v.to_be_bytes()[..5].to_vec()
        };
        assert_eq!(asc_rate_channels(&explicit), Some((44_100, 1)));
        assert_eq!(asc_rate_channels(&[]), None);
        assert_eq!(asc_rate_channels(&[0x12]), None);
    }

    #[test]
    fn bad_configs_and_frames_are_errors_not_panics() {
        // AAC Main (object type 1), 5.1 channels: refused.
        assert!(AacToOpus::new(&[0x0a, 0x10]).is_err());
        assert!(AacToOpus::new(&[0x12, 0x30]).is_err());
        assert!(AacToOpus::new(&[]).is_err());
        assert!(!supports(&[0x0a, 0x10]) && !supports(&[]) && supports(&[0x12, 0x10]));
        let mut t = AacToOpus::new(&[0x12, 0x10]).expect("AAC-LC 44.1 kHz stereo");
        assert_eq!(t.channels(), 2);
        let mut seed = 7u32;
        for n in 0..300 {
            let au: Vec<u8> = (0..(n % 40))
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            let _ = t.push(&au);
        }
    }
}
