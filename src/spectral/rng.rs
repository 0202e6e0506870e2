//! A small seeded deterministic random generator (xoshiro256**, seeded through SplitMix64),
//! so noise and synthetic scenes are reproducible across platforms without the `rand` crate.
//!
//! The sequence for a given seed is part of the project's contract: tests and saved scenes
//! depend on it, so do not change the algorithm.

/// xoshiro256** by Blackman and Vigna: fast, 256-bit state, passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
    /// Second normal deviate of the last Box–Muller pair, returned by the next `normal()`.
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 spreads any seed (0 included) over the full state.
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { state: [next(), next(), next(), next()], spare_normal: None }
    }

    /// An independent generator derived from this one (for sub-tasks that must not shift the
    /// parent's sequence when they change how many numbers they draw).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits of precision.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, 1) as f32.
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in 0..n (n = 0 gives 0). Lemire's multiply-shift; the bias is below
    /// 2^-64 · n, irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal deviate (Box–Muller, both values of each pair used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 - uniform() lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// A Poisson deviate with mean `lambda` (as f64). Exact (Knuth's product of uniforms)
    /// below 30, normal approximation N(λ, λ) rounded and clamped at 0 above. λ ≤ 0 or NaN
    /// gives 0.
    pub fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 0.0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u32;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            k as f64
        } else {
            (lambda + lambda.sqrt() * self.normal()).round().max(0.0)
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_seed_different() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xa: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn moments_are_right() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let u: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "uniform mean {mean}");
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let z: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let v = z.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "normal mean {m} var {v}");
        for lambda in [0.5, 4.0, 100.0] {
            let p: Vec<f64> = (0..n).map(|_| r.poisson(lambda)).collect();
            let m = p.iter().sum::<f64>() / n as f64;
            let v = p.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
            assert!((m - lambda).abs() < 0.02 * lambda.max(1.0), "poisson({lambda}) mean {m}");
            assert!((v - lambda).abs() < 0.05 * lambda.max(1.0), "poisson({lambda}) var {v}");
        }
        let counts = (0..n).fold([0usize; 3], |mut c, _| {
            c[r.below(3)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| (c as f64 / n as f64 - 1.0 / 3.0).abs() < 0.01));
    }
}
