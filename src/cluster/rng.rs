//! A small seeded generator (SplitMix64) so that clustering is reproducible from `--seed` alone,
//! independent of libtorch's global RNG state and of thread scheduling.

#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); n must be > 0. Multiply-shift, bias below 2^-64 · n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// The first `m` entries of a uniform random permutation of 0..n (partial Fisher-Yates).
    pub fn sample_without_replacement(&mut self, n: usize, m: usize) -> Vec<usize> {
        let m = m.min(n);
        let mut perm: Vec<usize> = (0..n).collect();
        for i in 0..m {
            let j = i + self.below((n - i) as u64) as usize;
            perm.swap(i, j);
        }
        perm.truncate(m);
        perm
    }
}

/// The 32-bit Mersenne Twister (`std::mt19937`), needed only to reproduce faiss' choices
/// exactly: faiss' `RandomGenerator` wraps it, and its `rand_perm` picks the initial centroids
/// and the training subsample. With it, the tch k-means can start from the very centroids faiss
/// starts from, which turns "close to faiss" into a sharp test of the Lloyd iterations.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// faiss `RandomGenerator::rand_int(max)`: `mt() % max`.
    pub fn faiss_rand_int(&mut self, max: u32) -> u32 {
        self.next_u32() % max
    }

    /// faiss `RandomGenerator::rand_float()`: `mt() / float(mt.max())` in single precision.
    pub fn faiss_rand_float(&mut self) -> f32 {
        self.next_u32() as f32 / u32::MAX as f32
    }
}

/// faiss `rand_perm(perm, n, seed)`: a Fisher-Yates permutation driven by mt19937(seed as u32).
pub fn faiss_rand_perm(n: usize, seed: i64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = Mt19937::new(seed as u32);
    let mut i = 0;
    while i + 1 < n {
        let j = i + rng.faiss_rand_int((n - i) as u32) as usize;
        perm.swap(i, j);
        i += 1;
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_cpp_standard() {
        // [rand.predef]: the 10000th output of a default-constructed mt19937 (seed 5489).
        let mut mt = Mt19937::new(5489);
        let mut v = 0;
        for _ in 0..10_000 {
            v = mt.next_u32();
        }
        assert_eq!(v, 4_123_659_995);
    }
}
