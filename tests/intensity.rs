//! Intensity normalisation and the CT window preset.

mod common;

use common::noise;
use warpscope::volume::affine;
use warpscope::volume::intensity::{
    self, CT_WINDOWS, ct_windows, normalize_minmax, normalize_percentile, percentile,
};
use warpscope::volume::{Grid, Volume};

fn line(values: Vec<f32>) -> Volume {
    let n = values.len();
    Volume::from_data(Grid::new([n, 1, 1], affine::IDENTITY), 1, values).expect("sizes")
}

#[test]
fn ct_windows_give_the_right_channel_values() {
    let ct = line(vec![-1000.0, 40.0, 400.0]);
    let w = ct_windows(&ct).expect("one channel");
    assert_eq!(w.channels, 3);
    assert_eq!(CT_WINDOWS.map(|w| w.name), ["abdomen", "lung", "bone"]);
    // abdomen W400/L40 → [−160, 240]
    let abdomen = [0.0, 0.5, 1.0];
    // lung W1400/L−500 → [−1200, 200]: (−1000+1200)/1400, (40+1200)/1400, clipped 1
    let lung = [200.0 / 1400.0, 1240.0 / 1400.0, 1.0];
    // bone W1000/L400 → [−100, 900]: clipped 0, 140/1000, 500/1000
    let bone = [0.0, 0.14, 0.5];
    for (c, expected) in [abdomen, lung, bone].iter().enumerate() {
        for (i, e) in expected.iter().enumerate() {
            let got = w.get(c, i, 0, 0);
            assert!((got - e).abs() < 1e-6, "channel {c} at {i}: {got} vs {e}");
        }
    }
    let two = Volume::from_data(Grid::new([1, 1, 1], affine::IDENTITY), 2, vec![0.0, 1.0])
        .expect("sizes");
    assert!(ct_windows(&two).is_err(), "needs a single-channel CT");
}

#[test]
fn minmax_maps_each_channel_to_unit_range() {
    let mut v = Volume::from_data(
        Grid::new([3, 1, 1], affine::IDENTITY),
        3,
        vec![2.0, 4.0, 6.0, -1.0, -1.0, -1.0, 10.0, 0.0, 5.0],
    )
    .expect("sizes");
    normalize_minmax(&mut v);
    assert_eq!(v.data, vec![0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.5]);
}

#[test]
fn percentiles_follow_numpys_linear_rule() {
    // numpy.percentile([1..=10], q) for q = 0, 25, 50, 90, 100.
    let mut v: Vec<f32> = (1..=10).rev().map(|i| i as f32).collect();
    for (q, want) in [
        (0.0, 1.0),
        (25.0, 3.25),
        (50.0, 5.5),
        (90.0, 9.1),
        (100.0, 10.0),
    ] {
        let got = percentile(&mut v, q).expect("non-empty");
        assert!((got - want).abs() < 1e-5, "q {q}: {got} vs {want}");
    }
    assert_eq!(percentile(&mut [], 50.0), None);
}

#[test]
fn percentile_clipping_and_nonzero_background() {
    // 0 background plus values 1..=100 with one bright outlier.
    let mut values = vec![0.0f32; 50];
    values.extend((1..=100).map(|i| i as f32));
    values.push(1.0e6);
    let mut v = line(values.clone());
    normalize_percentile(&mut v, 1.0, 99.0, true).expect("valid percentiles");
    assert!(v.data[..50].iter().all(|&x| x == 0.0), "background stays 0");
    assert_eq!(*v.data.last().expect("outlier"), 1.0, "outlier clipped");
    assert!(v.data[50] < 0.01 && v.data[149] > 0.98);
    let mut w = line(values);
    assert!(normalize_percentile(&mut w, 60.0, 40.0, false).is_err());
    let mut r = line(noise(1000, 9));
    intensity::normalize_percentile(&mut r, 0.0, 100.0, false).expect("valid");
    assert_eq!(r.range(0), Some((0.0, 1.0)));
}

/// The parallel histogram selection gives exactly the order statistics
/// (and interpolation) of the copy-and-select one, with repeated values,
/// excluded values, extremes and a constant input.
#[test]
fn parallel_percentiles_equal_the_selection() {
    let noise = common::noise(300_001, 77);
    let mut data: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(i, v)| match i % 97 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => 0.0,
            3 => 1234.5,
            _ => (v * 1000.0).round() / 7.0 - 40.0,
        })
        .collect();
    data[5] = -1e6;
    for nonzero in [false, true] {
        let keep = |v: f32| v.is_finite() && (!nonzero || v != 0.0);
        let mut kept: Vec<f32> = data.iter().copied().filter(|v| keep(*v)).collect();
        let pcts = [0.0, 0.5, 13.7, 50.0, 99.5, 100.0];
        let got = intensity::percentiles(&data, keep, pcts);
        for (p, g) in pcts.iter().zip(got) {
            let want = intensity::percentile(&mut kept, *p);
            assert_eq!(g, want, "percentile {p} (non-zero only: {nonzero})");
        }
    }
    let flat = vec![3.5f32; 1000];
    assert_eq!(
        intensity::percentiles(&flat, |v| v.is_finite(), [0.5, 99.5]),
        [Some(3.5), Some(3.5)]
    );
    assert_eq!(
        intensity::percentiles(&[f32::NAN; 10], |v| v.is_finite(), [50.0]),
        [None]
    );
}

/// A NIfTI CT carries no units: its air (−1000 HU) marks it. A head CT
/// synthesised in HU (air, brain, skull) is recognised; the shared MR
/// images (brain-extracted and whole head) and the PET are not. (The
/// shared `ct_brain.nii.gz` atlas has no air — background 0 — so it is not
/// recognised either: its window preset is picked by hand.)
#[test]
fn a_ct_is_recognised_by_its_air() {
    let read = |rel: &str| {
        warpscope::volume::nifti::read_file(common::shared(rel), Default::default())
            .expect("read")
            .0
    };
    assert!(intensity::looks_like_ct(&common::head_ct(24).data));
    for rel in [
        "sources/mni_t1.nii.gz",
        "sources/robex_t1_head.nii.gz",
        "dicom/reference_pet_suv.nii.gz",
        "sources/ct_brain.nii.gz",
    ] {
        assert!(!intensity::looks_like_ct(&read(rel).data), "{rel}");
    }
    assert!(!intensity::looks_like_ct(&[]));
    assert!(!intensity::looks_like_ct(&[-5000.0, -1000.0, 0.0]));
}
