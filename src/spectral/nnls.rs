//! Non-negative least squares on the normal equations (Lawson & Hanson's active-set method).
//!
//! Both users of this solver (FCLS unmixing and camera-response fitting) solve many small
//! problems that share one design matrix, so the solver takes the Gram matrix `G = AᵀA` and the
//! vector `b = Aᵀy` instead of `A` and `y`: the Gram matrix is built once and each problem costs
//! only a few tiny Cholesky solves.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// Work space reused across solves with the same number of variables.
pub struct NnlsSolver {
    n: usize,
    passive: Vec<bool>,
    idx: Vec<usize>,
    chol: Vec<f64>,
    rhs: Vec<f64>,
    z: Vec<f64>,
}

impl NnlsSolver {
    pub fn new(n: usize) -> Self {
        NnlsSolver {
            n,
            passive: vec![false; n],
            idx: Vec::with_capacity(n),
            chol: vec![0.0; n * n],
            rhs: vec![0.0; n],
            z: vec![0.0; n],
        }
    }

    /// Minimise ½xᵀGx − bᵀx subject to x ≥ 0, writing the answer into `x`.
    /// `G` must be symmetric positive (semi)definite; a tiny ridge keeps singular sub-blocks
    /// solvable. Returns the number of outer iterations used.
    pub fn solve(&mut self, g: ArrayView2<f64>, b: ArrayView1<f64>, x: &mut [f64]) -> usize {
        let n = self.n;
        debug_assert_eq!(g.dim(), (n, n));
        x.iter_mut().for_each(|v| *v = 0.0);
        self.passive.iter_mut().for_each(|p| *p = false);
        let scale = (0..n).map(|i| g[[i, i]]).fold(0.0f64, f64::max).max(1e-300);
        let tol = 1e-10 * scale;
        let max_outer = 3 * n + 10;
        let mut outer = 0;
        while outer < max_outer {
            outer += 1;
            // gradient of the objective, negated: w = b − Gx
            let mut best = None;
            let mut best_w = tol;
            for j in 0..n {
                if self.passive[j] {
                    continue;
                }
                let w = b[j] - (0..n).map(|k| g[[j, k]] * x[k]).sum::<f64>();
                if w > best_w {
                    best_w = w;
                    best = Some(j);
                }
            }
            let Some(j) = best else { break };
            self.passive[j] = true;
            // inner loop: keep the passive set feasible. Each pass moves at least one variable
            // out of the passive set, so n + 1 passes always suffice; the cap guards against
            // rounding cycling on degenerate problems.
            for _ in 0..=n {
                self.solve_passive(g, b);
                let mut alpha = f64::INFINITY;
                for (k, &i) in self.idx.iter().enumerate() {
                    if self.z[k] <= 0.0 {
                        let a = x[i] / (x[i] - self.z[k]);
                        alpha = alpha.min(a);
                    }
                }
                if !alpha.is_finite() {
                    for (k, &i) in self.idx.iter().enumerate() {
                        x[i] = self.z[k];
                    }
                    break;
                }
                for (k, &i) in self.idx.iter().enumerate() {
                    x[i] += alpha * (self.z[k] - x[i]);
                    if x[i] <= 1e-15 * scale.sqrt() {
                        x[i] = 0.0;
                        self.passive[i] = false;
                    }
                }
                if self.passive.iter().all(|p| !p) {
                    break;
                }
            }
        }
        outer
    }

    /// Solve G_PP z = b_P for the passive set P by Cholesky.
    fn solve_passive(&mut self, g: ArrayView2<f64>, b: ArrayView1<f64>) {
        self.idx.clear();
        self.idx.extend((0..self.n).filter(|&i| self.passive[i]));
        let m = self.idx.len();
        let ridge = 1e-12 * self.idx.iter().map(|&i| g[[i, i]]).fold(0.0f64, f64::max).max(1e-300);
        let l = &mut self.chol;
        for r in 0..m {
            for c in 0..=r {
                let mut s = g[[self.idx[r], self.idx[c]]];
                for k in 0..c {
                    s -= l[r * m + k] * l[c * m + k];
                }
                if r == c {
                    l[r * m + r] = (s + ridge).max(1e-300).sqrt();
                } else {
                    l[r * m + c] = s / l[c * m + c];
                }
            }
        }
        // forward then backward substitution
        for r in 0..m {
            let mut s = b[self.idx[r]];
            for k in 0..r {
                s -= l[r * m + k] * self.rhs[k];
            }
            self.rhs[r] = s / l[r * m + r];
        }
        for r in (0..m).rev() {
            let mut s = self.rhs[r];
            for k in r + 1..m {
                s -= l[k * m + r] * self.z[k];
            }
            self.z[r] = s / l[r * m + r];
        }
    }
}

/// Convenience: NNLS for min ‖Ax − y‖², x ≥ 0 (builds the normal equations).
pub fn nnls(a: ArrayView2<f64>, y: ArrayView1<f64>) -> Array1<f64> {
    let g: Array2<f64> = a.t().dot(&a);
    let b = a.t().dot(&y);
    let mut x = vec![0.0; a.ncols()];
    NnlsSolver::new(a.ncols()).solve(g.view(), b.view(), &mut x);
    Array1::from(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn recovers_a_non_negative_solution_exactly() {
        let a = array![[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.0, 0.4, 1.0], [0.5, 0.5, 0.5]];
        let truth = array![0.7, 0.0, 1.3];
        let y = a.dot(&truth);
        let x = nnls(a.view(), y.view());
        for (u, v) in x.iter().zip(truth.iter()) {
            assert!((u - v).abs() < 1e-9, "{x:?}");
        }
    }

    #[test]
    fn clamps_where_the_unconstrained_answer_is_negative() {
        // unconstrained solution of this system is (2, -1); NNLS must give x2 = 0 and the
        // best x1 for that: x1 = (a1·y)/(a1·a1)
        let a = array![[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]];
        let y = array![1.0, 0.0, -1.0];
        let x = nnls(a.view(), y.view());
        assert_eq!(x[1], 0.0);
        assert!((x[0] - 0.0).abs() < 1e-9, "{x:?}");
        let y = array![3.0, 2.0, 1.0];
        let x = nnls(a.view(), y.view());
        assert_eq!(x[1], 0.0);
        assert!((x[0] - 2.0).abs() < 1e-9, "{x:?}");
    }

    #[test]
    fn kkt_conditions_hold_on_random_problems() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        for _ in 0..50 {
            let a = Array2::from_shape_fn((12, 6), |_| next());
            let y = Array1::from_shape_fn(12, |_| next());
            let x = nnls(a.view(), y.view());
            let grad = a.t().dot(&(a.dot(&x) - &y)); // ∇ of ½‖Ax−y‖²
            for i in 0..6 {
                assert!(x[i] >= 0.0);
                if x[i] > 1e-9 {
                    assert!(grad[i].abs() < 1e-8, "active variable with gradient {}", grad[i]);
                } else {
                    assert!(grad[i] > -1e-8, "zero variable that should grow: {}", grad[i]);
                }
            }
        }
    }
}
