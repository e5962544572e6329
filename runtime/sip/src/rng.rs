//! Identifiers (tags, branches, Call-IDs) from a seeded generator, so the core stays free of OS randomness
//! and tests are reproducible. The driver seeds it from the OS.

/// SplitMix64: small, fast, and good enough for identifiers that must be unique, not secret.
#[derive(Debug, Clone)]
pub(crate) struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub(crate) fn new(seed: u64) -> IdGenerator {
        IdGenerator { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A From/To tag.
    pub(crate) fn tag(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub(crate) fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.next_u64())
    }

    /// A Call-ID local part.
    pub(crate) fn call_id(&mut self, host: &str) -> String {
        format!("{:016x}{:08x}@{host}", self.next_u64(), self.next_u64() as u32)
    }

    /// A starting CSeq below 2^31 (RFC 3261 §8.1.1.5), kept small for readability.
    pub(crate) fn initial_cseq(&mut self) -> u32 {
        (self.next_u64() % 10_000) as u32 + 1
    }
}
