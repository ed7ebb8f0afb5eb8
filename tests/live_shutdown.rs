//! Closing the viewer during a run stops the engine's worker cleanly: no
//! thread is left behind and the close does not wait for the run. Alone in
//! its test binary, so the process's threads are this test's own.

mod common;

use std::time::{Duration, Instant};

use common::ui::{harness, settle};
use egui_kittest::kittest::Queryable;
use warpscope::app::live::DeviceChoice;
use warpscope::app::{Role, Source, Startup};

/// Whether the thread `tid` of this process still exists.
fn alive(tid: u64) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

#[test]
fn closing_the_window_during_a_run_stops_its_worker() {
    for paused in [false, true] {
        let mut h = harness(Startup {
            images: vec![(Role::Fixed, Source::Demo), (Role::Moving, Source::Demo)],
            ..Default::default()
        });
        settle(&mut h);
        h.state_mut().reg.device = DeviceChoice::Cpu;
        let mut p = warpscope::register::Pipeline::preset("fast").expect("fast");
        p.affine.enabled = false;
        p.deformable.levels = 1;
        p.deformable.iterations = vec![100_000];
        h.state_mut().set_pipeline(p);
        h.run_steps(1);
        h.get_by_label("Run").click_accesskit();
        h.run_steps(2);
        let deadline = Instant::now() + Duration::from_secs(60);
        while h
            .state()
            .reg
            .run
            .as_ref()
            .is_none_or(|r| r.progress.loss.len() < 3)
        {
            assert!(Instant::now() < deadline, "no progress");
            h.step();
        }
        let tid = h
            .state()
            .run_worker_thread()
            .expect("the worker's thread id");
        assert!(alive(tid), "the worker runs");
        if paused {
            // A paused engine waits on its controls: closing must wake it.
            h.get_by_label("Pause").click_accesskit();
            h.run_steps(2);
        }
        let t = Instant::now();
        // What eframe does when the window closes: on_exit, then drop.
        h.state_mut().shutdown();
        drop(h);
        let closed = t.elapsed();
        assert!(closed < Duration::from_secs(10), "closing took {closed:?}");
        assert!(!alive(tid), "the worker ended (paused: {paused})");
    }
}
