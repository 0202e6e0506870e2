//! The little dense linear algebra the closed-form methods need, in f64: Cholesky solves for
//! small symmetric positive-definite systems and a Jacobi eigen-decomposition for the 31×31
//! spectral covariance. Sizes here are at most a few dozen, so clarity beats blocking.

use ndarray::{Array1, Array2};

/// Solve A·X = B for symmetric positive-definite A (n×n), B (n×m). `None` if A is not
/// positive definite (a pivot ≤ 0).
pub fn solve_spd(a: &Array2<f64>, b: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[[i, j]] - (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    let mut x = b.clone();
    for col in 0..b.ncols() {
        // L·z = b, then Lᵀ·x = z.
        for i in 0..n {
            let s: f64 = x[[i, col]] - (0..i).map(|k| l[[i, k]] * x[[k, col]]).sum::<f64>();
            x[[i, col]] = s / l[[i, i]];
        }
        for i in (0..n).rev() {
            let s: f64 = x[[i, col]] - (i + 1..n).map(|k| l[[k, i]] * x[[k, col]]).sum::<f64>();
            x[[i, col]] = s / l[[i, i]];
        }
    }
    Some(x)
}

/// Eigenvalues (descending) and eigenvectors (columns, same order) of a symmetric matrix, by
/// cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut m = a.clone();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| m[[i, j]].powi(2)).sum();
        let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[[p, q]].abs() < f64::MIN_POSITIVE {
                    continue;
                }
                // Rotation that zeroes m[p][q] (Golub & Van Loan, symmetric Schur).
                let theta = (m[[q, q]] - m[[p, p]]) / (2.0 * m[[p, q]]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[[k, p]], m[[k, q]]);
                    m[[k, p]] = c * mkp - s * mkq;
                    m[[k, q]] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[[p, k]], m[[q, k]]);
                    m[[p, k]] = c * mpk - s * mqk;
                    m[[q, k]] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[[j, j]].total_cmp(&m[[i, i]]));
    let values = Array1::from_iter(order.iter().map(|&i| m[[i, i]]));
    let mut vectors = Array2::<f64>::zeros((n, n));
    for (dst, &src) in order.iter().enumerate() {
        vectors.column_mut(dst).assign(&v.column(src));
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn solves_a_known_system() {
        let a = array![[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let x_true = array![[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]];
        let b = a.dot(&x_true);
        let x = solve_spd(&a, &b).unwrap();
        assert!((x - x_true).iter().all(|d| d.abs() < 1e-12));
        assert!(solve_spd(&array![[1.0, 2.0], [2.0, 1.0]], &array![[1.0], [1.0]]).is_none());
    }

    #[test]
    fn eigen_reconstructs_the_matrix() {
        let b = array![[2.0, 1.0, 0.0, 0.3], [1.0, 3.0, 0.5, 0.0], [0.0, 0.5, 1.0, 0.2], [0.3, 0.0, 0.2, 4.0]];
        let (values, vectors) = symmetric_eigen(&b);
        assert!(values.windows(2).into_iter().all(|w| w[0] >= w[1]));
        let rebuilt = vectors.dot(&Array2::from_diag(&values)).dot(&vectors.t());
        assert!((rebuilt - &b).iter().all(|d| d.abs() < 1e-10));
        let identity = vectors.t().dot(&vectors);
        assert!((identity - Array2::<f64>::eye(4)).iter().all(|d| d.abs() < 1e-10));
    }
}
