//! The viewer opens DICOM: a series folder as the fixed image, a folder of
//! two series through the series picker, PET in SUV with its window preset,
//! the hot colour map and "SUV" beside the value under the cursor.

mod common;

use std::path::PathBuf;

use common::shared;
use common::ui::{harness, settle, startup};
use egui_kittest::kittest::Queryable;
use warpscope::app::Role;
use warpscope::render::colormap::ColorMap;
use warpscope::volume::intensity::WindowPreset;

fn data(rel: &str) -> PathBuf {
    shared(&format!("dicom/{rel}"))
}

#[test]
fn the_viewer_opens_dicom_folders_and_shows_pet_in_suv() {
    let mr = data("mr");
    let mut h = harness(startup(&[(Role::Fixed, &mr)]));
    settle(&mut h);
    {
        let app = h.state();
        assert!(app.errors().is_empty(), "{:?}", app.errors());
        let fixed = app.images.fixed.as_ref().expect("fixed from DICOM");
        assert_eq!(fixed.volume.grid.dims, [98, 116, 94]);
        assert!(fixed.summary.contains("DICOM MR"), "{}", fixed.summary);
        assert_eq!(fixed.preset, WindowPreset::MriBrain);
    }
    // Two series in one folder: the viewer asks which.
    h.state_mut().open(Role::Moving, data("two_series"));
    settle(&mut h);
    assert!(h.state().images.moving.is_none());
    h.get_by_label_contains("Open which DICOM series?");
    let pet_button = h.get_by_label_contains("PT 'synthetic PT from MNI'");
    pet_button.click();
    h.run_steps(2);
    settle(&mut h);
    let app = h.state();
    assert!(app.series_choice.is_none());
    let moving = app.images.moving.as_ref().expect("PET opened");
    assert_eq!(moving.units, "SUV");
    assert_eq!(moving.preset, WindowPreset::PetSuv);
    assert_eq!(moving.style.colormap, ColorMap::Hot);
    assert!(moving.summary.contains("SUV"), "{}", moving.summary);
}
