//! The simulator's one source of choice: splitmix64, seeded. Every decision
//! that could go more than one way (which ready PD runs, IRG's tag, where a
//! corruption lands) draws from it, so a seed fixes the whole run.

/// A seeded splitmix64 generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the bias is below 2^-40 for our n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
