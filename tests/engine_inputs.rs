//! Bad input is refused with a clear message, a NaN during optimisation
//! stops the run keeping the last good field, and a running session obeys
//! pause, resume, stop and live parameter changes.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use warpscope::register::{
    self, Backend, Change, Control, Event, Inputs, Link, Pipeline, Status, make_device,
};
use warpscope::volume::{Grid, Volume, affine};

/// A smooth blob phantom on a 24³ grid, shifted by `shift` voxels along x.
fn phantom(shift: f32) -> Volume {
    let n = 24;
    let grid = Grid::new([n, n, n], affine::diagonal([2.0, 2.0, 2.0]));
    let mut v = Volume::filled(grid, 1, 0.0);
    let noise = common::noise(n * n * n, 3);
    for z in 0..n {
        for y in 0..n {
            for x in 0..n {
                let (dx, dy, dz) = (x as f32 - 11.5 - shift, y as f32 - 11.5, z as f32 - 11.5);
                let r2 = dx * dx + dy * dy * 1.4 + dz * dz * 0.8;
                let i = (z * n + y) * n + x;
                v.data[i] = (-r2 / 40.0).exp()
                    + 0.3 * (-((dx - 4.0).powi(2) + dy * dy + dz * dz) / 8.0).exp()
                    + 0.01 * noise[i];
            }
        }
    }
    v
}

fn inputs() -> Inputs {
    Inputs {
        fixed: phantom(0.0),
        moving: phantom(1.5),
        fixed_mask: None,
        labels: None,
    }
}

fn quick() -> Pipeline {
    Pipeline::preset("fast")
        .expect("preset")
        .with_overrides(&[
            "affine.coarsest=1".into(),
            "affine.levels=2".into(),
            "deformable.levels=2".into(),
            "deformable.iterations=30,20".into(),
        ])
        .expect("set")
}

fn cpu() -> burn::tensor::Device {
    make_device(Backend::Cpu).expect("cpu")
}

fn refused(inputs: &Inputs, pipeline: Pipeline) -> String {
    match register::register(inputs, pipeline, &cpu(), Link::default()) {
        Err(e) => e.to_string(),
        Ok(o) => panic!("expected a refusal, the run ended {:?}", o.status),
    }
}

#[test]
fn a_small_pair_registers() {
    let inp = inputs();
    let o = register::register(&inp, quick(), &cpu(), Link::default()).expect("register");
    assert_eq!(o.status, Status::Completed);
    // The moving blob sits 1.5 voxels further along +x: the mapping reaches there.
    let f = o.total_field_vox(&inp.fixed.grid);
    let n = inp.fixed.voxels();
    let centre = (12 * 24 + 12) * 24 + 12;
    let ux = f.data[centre];
    assert!(
        (ux - 1.5).abs() < 0.3,
        "x displacement at the centre {ux} (1.5 expected)"
    );
    assert!(f.data[n + centre].abs() < 0.3 && f.data[2 * n + centre].abs() < 0.3);
}

#[test]
fn bad_inputs_are_refused_with_a_message() {
    // Mismatched channel counts.
    let mut two = inputs();
    two.fixed = Volume::stack(&[phantom(0.0), phantom(0.0)]).expect("stack");
    let m = refused(&two, quick());
    assert!(
        m.contains("2 channel(s)") && m.contains("moving image 1"),
        "{m}"
    );
    // Empty mask.
    let mut masked = inputs();
    masked.fixed_mask = Some(Volume::filled(masked.fixed.grid.clone(), 1, 0.0));
    let m = refused(&masked, quick());
    assert!(m.contains("mask is empty"), "{m}");
    // Constant image.
    let mut flat = inputs();
    flat.moving.data.iter_mut().for_each(|v| *v = 0.25);
    let m = refused(&flat, quick());
    assert!(m.contains("constant") && m.contains("moving"), "{m}");
    // Empty volume and too small a grid.
    let mut tiny = inputs();
    tiny.fixed = Volume::filled(Grid::new([2, 24, 24], affine::IDENTITY), 1, 1.0);
    let m = refused(&tiny, quick());
    assert!(m.contains("at least 4"), "{m}");
    // NaN in the data (a caller that bypassed the reader's check).
    let mut nan = inputs();
    nan.moving.data[5] = f32::NAN;
    let m = refused(&nan, quick());
    assert!(m.contains("non-finite"), "{m}");
}

#[test]
fn bad_parameters_are_refused_with_a_message() {
    let e = Pipeline::preset("nope").expect_err("unknown preset");
    assert!(
        e.0.contains("unknown preset") && e.0.contains("brats-ic"),
        "{e}"
    );
    for (set, expect) in [
        ("deformable.bogus=1", "unknown parameter"),
        ("deformable.window=0", "window"),
        ("deformable.window=4", "odd"),
        ("deformable.diffusion=-1", "≥ 0"),
        ("deformable.lr=0", "> 0"),
        ("deformable.lr=nan", "finite"),
        ("deformable.iterations=10", "1 value(s) for 3 level(s)"),
        ("deformable.mse=0", "every similarity weight is 0"),
        ("affine.levels=x", "whole number"),
        ("deformable.svf=maybe", "true or false"),
    ] {
        let mut sets = vec![set.to_string()];
        if set == "deformable.mse=0" {
            sets.push("deformable.lncc=0".into());
        }
        let e = Pipeline::preset("fast")
            .expect("preset")
            .with_overrides(&sets)
            .expect_err(set);
        assert!(e.0.contains(expect), "{set}: {e}");
    }
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_field() {
    let inp = inputs();
    for fused in ["true", "false"] {
        // A learning rate of 1e30 throws the field to ±1e30 voxels after one
        // step: the diffusion term (off in fast, on here) overflows to
        // infinity at the next.
        let p = quick()
            .with_overrides(&[
                "affine.enabled=false".into(),
                "deformable.diffusion=0.3".into(),
                "deformable.lr=1e30".into(),
                format!("fused={fused}"),
            ])
            .expect("set");
        let o = register::register(&inp, p, &cpu(), Link::default()).expect("runs");
        let Status::Failed(m) = &o.status else {
            panic!("fused={fused}: expected a failure, got {:?}", o.status)
        };
        assert!(
            m.contains("loss became") && m.contains("last good field"),
            "{m}"
        );
        let f = o.field_vox.as_ref().expect("the last good field is kept");
        assert!(
            f.data.iter().all(|v| v.is_finite() && v.abs() < 1.0),
            "fused={fused}: the kept field is not the last good one"
        );
    }
}

#[test]
fn a_running_session_obeys_controls() {
    let inp = inputs();
    let p = quick()
        .with_overrides(&[
            "affine.enabled=false".into(),
            "deformable.iterations=400,400".into(),
        ])
        .expect("set");
    let (ev_tx, ev_rx) = mpsc::channel();
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let link = Link {
            events: Some(ev_tx),
            control: Some(ctl_rx),
            ..Default::default()
        };
        register::register(&inp, p, &make_device(Backend::Cpu).expect("cpu"), link)
            .expect("register")
    });
    let next_progress = |rx: &mpsc::Receiver<Event>| loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            Event::Progress(p) => return p,
            _ => continue,
        }
    };
    let first = next_progress(&ev_rx);
    assert_eq!(first.stage, "deformable");
    // A live change takes effect at the next iteration and is reported there.
    let change = |k: &str, v: &str| Change::parse(k, v).expect("a live change");
    ctl_tx
        .send(Control::Set(change("deformable.diffusion", "7.5")))
        .expect("send");
    // A structural key is refused where it is typed, before any run sees it.
    let window = Change::parse("deformable.window", "5").expect_err("structural");
    assert!(
        window.to_string().contains("deformable.window=5"),
        "{window}"
    );
    // A value that parses but leaves the pipeline invalid is refused by the engine.
    ctl_tx
        .send(Control::Set(change("deformable.lncc", "-1")))
        .expect("send");
    let mut applied_at = None;
    let mut notices = Vec::new();
    while applied_at.is_none() {
        match ev_rx.recv_timeout(Duration::from_secs(60)).expect("event") {
            Event::Progress(p) if !p.applied.is_empty() => {
                assert_eq!(p.applied, vec![change("deformable.diffusion", "7.5")]);
                applied_at = Some(p.iter);
            }
            Event::Notice(n) => notices.push(n),
            _ => {}
        }
    }
    assert!(
        notices
            .iter()
            .any(|n| n.contains("deformable.lncc=-1") && n.contains("≥ 0")),
        "{notices:?}"
    );
    // Pause: no progress while paused; resume: progress again.
    ctl_tx.send(Control::Pause).expect("send");
    std::thread::sleep(Duration::from_millis(200));
    while ev_rx.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(400));
    assert!(ev_rx.try_recv().is_err(), "progress arrived while paused");
    ctl_tx.send(Control::Snapshot).expect("send");
    ctl_tx.send(Control::Resume).expect("send");
    let mut snapshot = None;
    while snapshot.is_none() {
        if let Event::Snapshot(s) = ev_rx.recv_timeout(Duration::from_secs(60)).expect("event") {
            snapshot = Some(s);
        }
    }
    let s = snapshot.expect("snapshot");
    let field = s.field_volume().expect("host field");
    assert_eq!(field.channels, 3);
    assert_eq!(field.grid, s.grid);
    assert!(field.data.iter().all(|v| v.is_finite()));
    ctl_tx.send(Control::Stop).expect("send");
    let o = worker.join().expect("worker thread");
    assert_eq!(o.status, Status::Stopped);
    assert!(
        o.iterations < 800,
        "stopped after {} iterations",
        o.iterations
    );
    assert_eq!(o.pipeline.deformable.diffusion, vec![7.5]);
    assert!(o.field_vox.is_some(), "a stopped run keeps its field");
}
