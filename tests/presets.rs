//! Every named preset registers a small synthetic pair: it lowers the
//! landmark TRE and does not fold. The pair is brain2mm_syn brought to
//! 4 mm (54×63×52; its landmarks are in world mm, so they stay valid),
//! small enough for the slower presets on two cores.

mod common;

use warpscope::landmarks::formats::parse_pair_csv;
use warpscope::metrics::{jacobian, tre};
use warpscope::register::{self, Backend, Inputs, Link, Pipeline, Status, make_device};
use warpscope::volume::nifti::{ReadOptions, read_file};
use warpscope::volume::pyramid::downsample2;

#[test]
fn every_preset_lowers_tre_without_folding() {
    let dir = common::shared("pairs/brain2mm_syn");
    let read = |f: &str| {
        let v = read_file(dir.join(f), ReadOptions::default())
            .expect("read")
            .0;
        downsample2(&v, 1.0)
    };
    let inputs = Inputs {
        fixed: read("fixed.nii.gz"),
        moving: read("moving.nii.gz"),
        fixed_mask: None,
    };
    let text = std::fs::read_to_string(dir.join("landmarks.csv")).expect("landmarks");
    let (fixed_lm, moving_lm) = parse_pair_csv(&text, "landmarks.csv").expect("pair csv");
    let device = make_device(Backend::Cpu).expect("cpu device");
    let mut rows = Vec::new();
    for name in warpscope::register::params::PRESETS {
        let o = register::register(
            &inputs,
            Pipeline::preset(name).expect("preset"),
            &device,
            Link::default(),
        )
        .expect("register");
        assert_eq!(o.status, Status::Completed, "{name}");
        let mapping = o.mapping(&inputs.fixed.grid);
        let report = tre::tre(&fixed_lm, &moving_lm, &mapping, None, &|_| false);
        let (before, after) = (
            report.before.as_ref().expect("landmarks used").mean,
            report.after.as_ref().expect("landmarks mapped").mean,
        );
        let det = jacobian::determinant(&mapping);
        let folds = jacobian::stats(&det, &mapping, None)
            .expect("jacobian")
            .frac_nonpos;
        rows.push(format!(
            "{name:<10} TRE {before:.3} → {after:.3} mm, det J ≤ 0 at {:.4} %",
            100.0 * folds
        ));
        println!("{}", rows.last().expect("row"));
        assert!(
            after < 0.9 * before,
            "{name}: TRE {before:.3} → {after:.3} mm"
        );
        assert!(
            folds < 1e-4,
            "{name}: {:.4} % of voxels fold",
            100.0 * folds
        );
    }
}
