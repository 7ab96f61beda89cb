//! Counter-based randomness: every stream is a pure function of a few integers (seed, epoch,
//! sample index, view), so any sample can be re-drawn in any order, on any worker or rank.

/// SplitMix64 finaliser: a good 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a list of integers into one seed (order matters).
pub fn seed_of(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5117_u64, |acc, &p| mix64(acc ^ mix64(p)))
}

/// A small, fast generator (xoshiro256**), seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix64(x)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// A generator for the stream named by `parts` (e.g. `[seed, epoch, index, view]`).
    pub fn for_stream(parts: &[u64]) -> Self {
        Rng::new(seed_of(parts))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0), without modulo bias worth mentioning (Lemire).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The random numbers an augmentation consumes, abstracted so tests can replay torchvision's
/// draws: `uniform(lo, hi)` mirrors `torch.empty(1).uniform_(lo, hi)` (float32) and
/// `randint(n)` mirrors `torch.randint(0, n, (1,))`.
pub trait Draws {
    fn unit(&mut self) -> f64;
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = self.unit();
        (lo + u * (hi - lo)) as f32 as f64
    }
    fn randint(&mut self, n: u64) -> u64 {
        ((self.unit() * n as f64) as u64).min(n.saturating_sub(1))
    }
}

impl Draws for Rng {
    fn unit(&mut self) -> f64 {
        self.uniform()
    }
}

/// Replays a fixed list of unit draws (for tests against torchvision); repeats the last one.
#[derive(Debug, Clone)]
pub struct Replay {
    pub values: Vec<f64>,
    pub pos: usize,
}

impl Draws for Replay {
    fn unit(&mut self) -> f64 {
        let v = self.values.get(self.pos).or(self.values.last()).copied().unwrap_or(0.5);
        self.pos += 1;
        v
    }
}
