//! Splits, normalisation, augmentation and batches.
//!
//! - Validation split: stratified and seeded; from each class `round(fraction * n_k)` samples
//!   (chosen by a seeded shuffle of that class) go to validation.
//! - Normalisation: per channel `x' = (x / 255 - mean_c) / std_c` for images (synthetic features:
//!   `(x - mean_c) / std_c`), with mean and (population) std over the training split.
//! - Augmentation (CIFAR default): random crop of the image zero-padded by 4 pixels, then a
//!   horizontal flip with probability 1/2 (torchvision's `RandomCrop(32, padding=4)` +
//!   `RandomHorizontalFlip`; padding is black before normalisation).
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::source::{Pixels, Samples};

/// A seeded RNG for one purpose (`stream`) in one epoch, independent of everything else, so a
/// resumed run draws exactly the same numbers.
pub fn rng_for(seed: u64, epoch: u64, stream: u64) -> ChaCha8Rng {
    // splitmix64-style mixing of the three numbers.
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// Keeps the first `per_class` samples of each class (in data-set order); returns indices.
pub fn first_per_class(labels: &[u32], k: usize, per_class: Option<usize>) -> Vec<usize> {
    let Some(n) = per_class else {
        return (0..labels.len()).collect();
    };
    let mut seen = vec![0usize; k];
    let mut out = Vec::new();
    for (i, &y) in labels.iter().enumerate() {
        if seen[y as usize] < n {
            seen[y as usize] += 1;
            out.push(i);
        }
    }
    out
}

/// Stratified seeded split of `pool` (indices into `labels`) into (train, validation), both sorted.
pub fn stratified_split(
    labels: &[u32],
    k: usize,
    pool: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for &i in pool {
        by_class[labels[i] as usize].push(i);
    }
    let mut rng = rng_for(seed, u64::MAX, 1);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut c in by_class {
        c.shuffle(&mut rng);
        let nv = ((c.len() as f64) * fraction).round() as usize;
        let nv = nv.min(c.len().saturating_sub(1)); // keep at least one training sample per class
        val.extend_from_slice(&c[..nv]);
        train.extend_from_slice(&c[nv..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Per-channel affine normalisation `x' = (x * scale - mean_c) / std_c`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// 1/255 for byte images, 1 for float features.
    pub scale: f64,
}

impl Normalization {
    /// Identity (only the byte scaling).
    pub fn identity(channels: usize, scale: f64) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
            scale,
        }
    }

    /// Mean and population std per channel over the samples `idx`.
    pub fn fit(s: &Samples, idx: &[usize]) -> Self {
        let [c, h, w] = s.shape;
        let hw = h * w;
        let scale = match s.pixels {
            Pixels::U8(_) => 1.0 / 255.0,
            Pixels::F32(_) => 1.0,
        };
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let len = s.sample_len();
        for &i in idx {
            for ch in 0..c {
                let range = i * len + ch * hw..i * len + (ch + 1) * hw;
                let (a, b) = match &s.pixels {
                    Pixels::U8(v) => v[range].iter().fold((0f64, 0f64), |(a, b), &x| {
                        let x = x as f64 * scale;
                        (a + x, b + x * x)
                    }),
                    Pixels::F32(v) => v[range].iter().fold((0f64, 0f64), |(a, b), &x| {
                        let x = x as f64;
                        (a + x, b + x * x)
                    }),
                };
                sum[ch] += a;
                sq[ch] += b;
            }
        }
        let n = (idx.len() * hw).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let v = (q / n - m * m).max(0.0).sqrt();
                if v > 1e-12 {
                    v
                } else {
                    1.0
                }
            })
            .collect();
        Normalization { mean, std, scale }
    }
}

/// Augmentation settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    pub crop_padding: usize,
    pub flip: bool,
}

/// Builds one batch: normalised f32 values (B x C x H x W) and labels, optionally augmented.
pub fn make_batch(
    s: &Samples,
    idx: &[usize],
    norm: &Normalization,
    augment: Option<(Augment, &mut ChaCha8Rng)>,
    out: &mut Vec<f32>,
    labels: &mut Vec<u32>,
) {
    let [c, h, w] = s.shape;
    let len = c * h * w;
    out.clear();
    out.resize(idx.len() * len, 0.0);
    labels.clear();
    // Per-channel affine map x -> x * a_c + b_c.
    let a: Vec<f32> = (0..c)
        .map(|ch| (norm.scale / norm.std[ch]) as f32)
        .collect();
    let b: Vec<f32> = (0..c)
        .map(|ch| (-norm.mean[ch] / norm.std[ch]) as f32)
        .collect();
    let lut: Option<Vec<Vec<f32>>> = match s.pixels {
        Pixels::U8(_) => Some(
            (0..c)
                .map(|ch| (0..256).map(|v| v as f32 * a[ch] + b[ch]).collect())
                .collect(),
        ),
        Pixels::F32(_) => None,
    };
    let mut aug = augment;
    for (bi, &i) in idx.iter().enumerate() {
        labels.push(s.labels[i]);
        let dst = &mut out[bi * len..(bi + 1) * len];
        let (dy, dx, flip) = match aug.as_mut() {
            Some((au, rng)) => {
                let p = au.crop_padding as i64;
                let dy = if p > 0 { rng.random_range(-p..=p) } else { 0 };
                let dx = if p > 0 { rng.random_range(-p..=p) } else { 0 };
                let flip = au.flip && rng.random_bool(0.5);
                (dy, dx, flip)
            }
            None => (0, 0, false),
        };
        let plain = dy == 0 && dx == 0 && !flip;
        for ch in 0..c {
            let base = i * len + ch * h * w;
            let d = &mut dst[ch * h * w..(ch + 1) * h * w];
            match (&s.pixels, &lut) {
                (Pixels::U8(v), Some(lut)) => {
                    let t = &lut[ch];
                    if plain {
                        for (o, &x) in d.iter_mut().zip(&v[base..base + h * w]) {
                            *o = t[x as usize];
                        }
                    } else {
                        for y in 0..h {
                            for x in 0..w {
                                let sx = if flip { w - 1 - x } else { x } as i64 + dx;
                                let sy = y as i64 + dy;
                                let raw = if sy >= 0 && sy < h as i64 && sx >= 0 && sx < w as i64 {
                                    v[base + sy as usize * w + sx as usize]
                                } else {
                                    0
                                };
                                d[y * w + x] = t[raw as usize];
                            }
                        }
                    }
                }
                (Pixels::F32(v), _) => {
                    for (o, &x) in d.iter_mut().zip(&v[base..base + h * w]) {
                        *o = x * a[ch] + b[ch];
                    }
                }
                _ => unreachable!(),
            }
        }
    }
}

/// The order of the training indices in epoch `epoch` (seeded shuffle).
pub fn epoch_order(train_idx: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = train_idx.to_vec();
    order.shuffle(&mut rng_for(seed, epoch as u64, 2));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Samples {
        // 2 classes, 3 channels 2x2, values = sample index
        let n = 10;
        let px: Vec<u8> = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as u8 * 10, 12))
            .collect();
        Samples {
            pixels: Pixels::U8(px),
            labels: (0..n as u32).map(|i| i % 2).collect(),
            shape: [3, 2, 2],
            num_classes: 2,
        }
    }

    #[test]
    fn split_is_stratified_seeded_and_disjoint() {
        let labels: Vec<u32> = (0..100).map(|i| (i % 4) as u32).collect();
        let pool: Vec<usize> = (0..100).collect();
        let (t, v) = stratified_split(&labels, 4, &pool, 0.2, 7);
        assert_eq!(v.len(), 20);
        assert_eq!(t.len(), 80);
        for c in 0..4 {
            assert_eq!(v.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort();
        assert_eq!(all, pool);
        assert_eq!(
            stratified_split(&labels, 4, &pool, 0.2, 7),
            (t.clone(), v.clone())
        );
        assert_ne!(stratified_split(&labels, 4, &pool, 0.2, 8).1, v);
    }

    #[test]
    fn per_class_keeps_first_n() {
        let labels = [0, 1, 0, 0, 1, 2, 1];
        assert_eq!(first_per_class(&labels, 3, Some(2)), vec![0, 1, 2, 4, 5]);
    }

    #[test]
    fn normalisation_gives_zero_mean_unit_std() {
        let s = tiny();
        let idx: Vec<usize> = (0..10).collect();
        let norm = Normalization::fit(&s, &idx);
        let (mut out, mut lab) = (vec![], vec![]);
        make_batch(&s, &idx, &norm, None, &mut out, &mut lab);
        let n = out.len() as f64;
        let m = out.iter().map(|&x| x as f64).sum::<f64>() / n;
        let v = out.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n;
        assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "{m} {v}");
        assert_eq!(lab, s.labels);
    }

    #[test]
    fn crop_and_flip_move_pixels() {
        // one 1-channel 3x3 image 1..9
        let s = Samples {
            pixels: Pixels::U8((1..=9).collect()),
            labels: vec![0],
            shape: [1, 3, 3],
            num_classes: 1,
        };
        let norm = Normalization::identity(1, 1.0);
        let (mut out, mut lab) = (vec![], vec![]);
        let mut rng = rng_for(1, 1, 1);
        let mut seen_shift = false;
        for _ in 0..50 {
            make_batch(
                &s,
                &[0],
                &norm,
                Some((
                    Augment {
                        crop_padding: 1,
                        flip: true,
                    },
                    &mut rng,
                )),
                &mut out,
                &mut lab,
            );
            // each output is a shifted (maybe flipped) copy with zeros entering from the border
            let nonzero: Vec<f32> = out.iter().copied().filter(|&x| x != 0.0).collect();
            assert!(nonzero.iter().all(|&x| (1.0..=9.0).contains(&x)));
            if nonzero.len() < 9 {
                seen_shift = true;
            }
        }
        assert!(seen_shift);
    }
}
