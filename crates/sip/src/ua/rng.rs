//! Tags, branches, Call-IDs and cnonces from a seeded generator (SplitMix64), so that a
//! simulation replays exactly. The transport driver seeds it from the OS.

pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` random lowercase hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(n);
        let mut bits = 0u64;
        for i in 0..n {
            if i % 16 == 0 {
                bits = self.next_u64();
            }
            s.push(HEX[(bits & 15) as usize] as char);
            bits >>= 4;
        }
        s
    }

    pub fn tag(&mut self) -> String {
        self.hex(16)
    }

    /// An RFC 3261 branch (magic cookie + 16 hex digits).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.hex(16))
    }

    pub fn call_id(&mut self) -> String {
        self.hex(24)
    }

    /// A starting CSeq number below 2^31 (§8.1.1.5), small enough to leave room.
    pub fn cseq(&mut self) -> u32 {
        (self.next_u64() % 10_000) as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let mut a = Rng::new(1);
        let mut b = Rng::new(1);
        assert_eq!(a.branch(), b.branch());
        let br = a.branch();
        assert!(br.starts_with("z9hG4bK") && br.len() == 23);
        assert_eq!(a.hex(40).len(), 40);
        assert!((1..=10_000).contains(&a.cseq()));
    }
}
