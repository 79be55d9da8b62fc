//! Feature equivalence between two networks (e.g. the same architecture trained with two
//! losses): orthogonal-Procrustes distance of class-mean (or classifier) geometry, and linear
//! CKA of sample features.

use crate::linalg::product;
use crate::{Error, Result};
use faer::{Mat, MatRef, Par};

/// Orthogonal-Procrustes distance between the configurations of K points `a` (K x d_a,
/// row-major) and `b` (K x d_b), after centring each on its mean row and scaling it to unit
/// Frobenius norm:
///
/// dist = min_R || A - B R ||_F over partial isometries R = sqrt(2 - 2 ||A^T B||_*),
///
/// where ||.||_* is the nuclear norm. 0 means the same geometry up to rotation (reflection)
/// and scale; the largest possible value is sqrt(2). The dimensions may differ (networks of
/// different widths). Near 0 the square root limits the resolution to about 1e-8.
pub fn procrustes_distance(a: &[f64], dim_a: usize, b: &[f64], dim_b: usize) -> Result<f64> {
    let ca = centred_columns(a, dim_a, "first configuration")?;
    let cb = centred_columns(b, dim_b, "second configuration")?;
    if ca.nrows() != cb.nrows() {
        return Err(Error::Mismatch(format!(
            "the configurations have {} and {} points (classes)",
            ca.nrows(),
            cb.nrows()
        )));
    }
    let (na, nb) = (ca.norm_l2(), cb.norm_l2());
    if na == 0.0 || nb == 0.0 {
        return Err(Error::DegenerateMeans);
    }
    // With thin SVDs A = Ua Sa Va^T and B = Ub Sb Vb^T, the singular values of A^T B are
    // those of the small matrix Sa Ua^T Ub Sb (no square roots of tiny eigenvalues).
    let (ua, sa) = scaled_left_factor(&ca)?;
    let (ub, sb) = scaled_left_factor(&cb)?;
    let core = mul(ua.transpose(), ub.as_ref());
    let core = Mat::from_fn(core.nrows(), core.ncols(), |i, j| {
        sa[i] * core[(i, j)] * sb[j]
    });
    let nuclear: f64 = singular_values(&core)?.iter().sum::<f64>() / (na * nb);
    Ok((2.0 - 2.0 * nuclear).max(0.0).sqrt())
}

/// U and the singular values of the thin SVD of a K x d matrix.
fn scaled_left_factor(m: &Mat<f64>) -> Result<(Mat<f64>, Vec<f64>)> {
    let svd = m.thin_svd().map_err(|e| Error::Linalg(format!("{e:?}")))?;
    Ok((
        svd.U().to_owned(),
        svd.S().column_vector().iter().copied().collect(),
    ))
}

fn singular_values(m: &Mat<f64>) -> Result<Vec<f64>> {
    let svd = m.thin_svd().map_err(|e| Error::Linalg(format!("{e:?}")))?;
    Ok(svd.S().column_vector().iter().copied().collect())
}

/// Linear CKA between two feature matrices of the same N samples, `x` (N x d_x) and `y`
/// (N x d_y), row-major, rows matched sample by sample:
///
/// CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), with column-centred Xc, Yc.
///
/// 1 when one is an orthogonal transform and rescaling of the other; invariant to isotropic
/// scaling and rotation, not to arbitrary invertible maps.
pub fn linear_cka(x: &[f64], dim_x: usize, y: &[f64], dim_y: usize) -> Result<f64> {
    let xc = centred_columns(x, dim_x, "first features")?;
    let yc = centred_columns(y, dim_y, "second features")?;
    if xc.nrows() != yc.nrows() {
        return Err(Error::Mismatch(format!(
            "the feature sets have {} and {} samples",
            xc.nrows(),
            yc.nrows()
        )));
    }
    let cross = mul(yc.transpose(), xc.as_ref()).norm_l2().powi(2);
    let self_x = mul(xc.transpose(), xc.as_ref()).norm_l2();
    let self_y = mul(yc.transpose(), yc.as_ref()).norm_l2();
    if self_x == 0.0 || self_y == 0.0 {
        return Err(Error::InvalidArgument(
            "CKA of a constant feature set is undefined".into(),
        ));
    }
    Ok(cross / (self_x * self_y))
}

fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    product(a, b, Par::rayon(0))
}

fn as_matrix<'a>(values: &'a [f64], dim: usize, what: &str) -> Result<MatRef<'a, f64>> {
    if dim == 0 || !values.len().is_multiple_of(dim) || values.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what}: {} values do not form rows of length {dim}",
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!("{what} holds NaN or Inf")));
    }
    Ok(MatRef::from_row_major_slice(
        values,
        values.len() / dim,
        dim,
    ))
}

fn centred_columns(values: &[f64], dim: usize, what: &str) -> Result<Mat<f64>> {
    let m = as_matrix(values, dim, what)?;
    let rows = m.nrows() as f64;
    let means: Vec<f64> = (0..dim)
        .map(|j| (0..m.nrows()).map(|i| m[(i, j)]).sum::<f64>() / rows)
        .collect();
    Ok(Mat::from_fn(m.nrows(), dim, |i, j| m[(i, j)] - means[j]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(seed: u64, len: usize) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// Rows of `x` (n x d) times a random orthogonal d x e matrix (e >= d), scaled and shifted.
    fn rotated(x: &[f64], d: usize, e: usize, scale: f64, shift: f64) -> Vec<f64> {
        let g = Mat::from_fn(e, e, |i, j| values(7 + (i * e + j) as u64, 1)[0]);
        let q = g.qr().compute_Q();
        let q = q.as_ref();
        x.chunks(d)
            .flat_map(|row| {
                (0..e)
                    .map(move |j| scale * (0..d).map(|i| row[i] * q[(i, j)]).sum::<f64>() + shift)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rotated_scaled_copy_has_distance_zero_and_cka_one() {
        let (k, d) = (6, 5);
        let a = values(1, k * d);
        // Into a wider space (as for a network of larger width), rotated, scaled, shifted.
        let b = rotated(&a, d, 8, 3.5, 2.0);
        assert!(procrustes_distance(&a, d, &b, 8).unwrap() < 1e-7);
        let x = values(2, 200 * d);
        let y = rotated(&x, d, 7, 0.25, -1.0);
        assert!((linear_cka(&x, d, &y, 7).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn different_geometry_is_far() {
        let (k, d) = (6, 5);
        let a = values(1, k * d);
        let b = values(3, k * d);
        let dist = procrustes_distance(&a, d, &b, d).unwrap();
        assert!(dist > 0.1 && dist <= 2f64.sqrt() + 1e-12, "{dist}");
        // Brute force for d_a = d_b: min over orthogonal R of ||A - B R||_F by the SVD of B^T A.
        let centre = |v: &[f64]| centred_columns(v, d, "x").unwrap();
        let (ca, cb) = (centre(&a), centre(&b));
        let (na, nb) = (ca.norm_l2(), cb.norm_l2());
        let an = Mat::from_fn(k, d, |i, j| ca[(i, j)] / na);
        let bn = Mat::from_fn(k, d, |i, j| cb[(i, j)] / nb);
        let svd = mul(bn.transpose(), an.as_ref()).svd().unwrap();
        let r = mul(svd.U(), svd.V().transpose());
        let residual = mul(bn.as_ref(), r.as_ref());
        let brute = Mat::from_fn(k, d, |i, j| an[(i, j)] - residual[(i, j)]).norm_l2();
        assert!((dist - brute).abs() < 1e-9, "{dist} vs {brute}");

        let x = values(4, 300 * d);
        let y = values(5, 300 * d);
        let cka = linear_cka(&x, d, &y, d).unwrap();
        assert!(cka < 0.2, "independent features: {cka}");
        // Brute force through the N x N centred Gram matrices: HSIC(K, L) / sqrt(HSIC(K,K) HSIC(L,L)).
        let (xc, yc) = (
            centred_columns(&x, d, "x").unwrap(),
            centred_columns(&y, d, "y").unwrap(),
        );
        let (kx, ly) = (
            mul(xc.as_ref(), xc.transpose()),
            mul(yc.as_ref(), yc.transpose()),
        );
        let inner = |p: &Mat<f64>, q: &Mat<f64>| -> f64 {
            (0..p.nrows())
                .flat_map(|i| (0..p.ncols()).map(move |j| (i, j)))
                .map(|(i, j)| p[(i, j)] * q[(i, j)])
                .sum()
        };
        let brute = inner(&kx, &ly) / (inner(&kx, &kx) * inner(&ly, &ly)).sqrt();
        assert!((cka - brute).abs() < 1e-12, "{cka} vs {brute}");
    }

    #[test]
    fn mismatched_or_degenerate_inputs_are_errors() {
        assert!(procrustes_distance(&values(1, 12), 3, &values(2, 15), 3).is_err());
        assert!(procrustes_distance(&[1.0; 12], 3, &values(2, 12), 3).is_err());
        assert!(linear_cka(&values(1, 12), 3, &values(2, 15), 3).is_err());
        assert!(linear_cka(&[f64::NAN; 6], 3, &values(2, 6), 3).is_err());
    }

    /// CKA is undefined when either feature set is constant (its Gram matrix is 0), and
    /// the Procrustes distance when either configuration is a single point; rows that do
    /// not divide into the dimension, empty inputs and NaN in either input are refused.
    #[test]
    fn each_argument_is_checked_on_its_own() {
        let (x, constant) = (values(3, 12), [2.5; 12]);
        for (a, b) in [(&x[..], &constant[..]), (&constant[..], &x[..])] {
            assert!(matches!(
                linear_cka(a, 3, b, 3),
                Err(Error::InvalidArgument(_))
            ));
            assert!(matches!(
                procrustes_distance(a, 3, b, 3),
                Err(Error::DegenerateMeans)
            ));
        }
        let mut with_nan = x.clone();
        with_nan[7] = f64::NAN;
        for (a, b) in [(&x[..], &with_nan[..]), (&with_nan[..], &x[..])] {
            assert!(matches!(
                linear_cka(a, 3, b, 3),
                Err(Error::InvalidArgument(_))
            ));
            assert!(matches!(
                procrustes_distance(a, 3, b, 3),
                Err(Error::InvalidArgument(_))
            ));
        }
        for dim in [0, 5] {
            assert!(matches!(
                linear_cka(&x, dim, &x, 3),
                Err(Error::InvalidArgument(_))
            ));
            assert!(matches!(
                procrustes_distance(&x, 3, &x, dim),
                Err(Error::InvalidArgument(_))
            ));
        }
        assert!(matches!(
            linear_cka(&[], 3, &x, 3),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            linear_cka(&x, 3, &values(4, 15), 3),
            Err(Error::Mismatch(_))
        ));
        assert!(matches!(
            procrustes_distance(&x, 3, &values(4, 15), 3),
            Err(Error::Mismatch(_))
        ));
        // Different dimensions with the same number of rows are fine.
        assert!(linear_cka(&x, 3, &values(5, 16), 4).is_ok());
        assert!(procrustes_distance(&x, 3, &values(5, 8), 2).is_ok());
    }
}
