//! DICOM series against the NIfTI they were written from (by pydicom, an
//! independent writer: `../shared/bench/make_dicom.py`), pydicom's own test
//! objects in several transfer syntaxes, and every refusal.

mod common;

use std::path::{Path, PathBuf};

use common::{scratch_dir, shared, warpscope};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use warpscope::volume::dicom::{self, Units};
use warpscope::volume::nifti::{self, ReadOptions};
use warpscope::volume::open::{ImageInfo, read_image};
use warpscope::volume::{Volume, VolumeErrorKind as K};

fn data(rel: &str) -> PathBuf {
    shared(&format!("dicom/{rel}"))
}

fn reference(name: &str) -> Volume {
    nifti::read_file(data(name), ReadOptions::default())
        .expect("reference")
        .0
}

fn assert_same_geometry(a: &Volume, b: &Volume, what: &str) {
    assert_eq!(a.grid.dims, b.grid.dims, "{what}: dims");
    for r in 0..3 {
        for c in 0..4 {
            let (x, y) = (a.grid.affine[r][c], b.grid.affine[r][c]);
            assert!((x - y).abs() < 1e-3, "{what}: affine[{r}][{c}] {x} vs {y}");
        }
    }
}

fn max_diff(a: &Volume, b: &Volume) -> f64 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn an_mr_series_equals_the_nifti_it_was_written_from() {
    for (folder, nii) in [
        ("mr", "reference_mr.nii.gz"),
        ("mr_oblique", "reference_mr_oblique.nii.gz"),
    ] {
        let (v, info) = dicom::read_series(&data(folder), None).expect(folder);
        let r = reference(nii);
        assert_same_geometry(&v, &r, folder);
        assert_eq!(max_diff(&v, &r), 0.0, "{folder}: values");
        assert_eq!(info.series.modality, "MR");
        assert_eq!(info.slices, 94);
        assert!((info.slice_step_mm - 2.0).abs() < 1e-6);
        // One file of the series reads the whole series.
        let (w, _) =
            dicom::read_series(&data(&format!("{folder}/IM0007.dcm")), None).expect("file");
        assert_eq!(w.data, v.data);
    }
}

#[test]
fn a_pet_series_reads_in_suv() {
    let (v, info) = read_image(&data("pet"), ReadOptions::default(), None).expect("pet");
    assert!(info.is_suv(), "{info:?}");
    assert_eq!(info.units(), "SUV");
    let r = reference("reference_pet_suv.nii.gz");
    assert_same_geometry(&v, &r, "pet");
    let d = max_diff(&v, &r);
    assert!(d < 1e-3, "SUV differs by {d}");
    // Grey matter was made SUV 8 before smoothing: the maximum is near it.
    let hi = v.data.iter().copied().fold(f32::MIN, f32::max);
    assert!((7.0..8.01).contains(&hi), "max SUV {hi}");
}

#[test]
fn a_folder_with_two_series_lists_them_and_reads_the_one_picked() {
    let folder = data("two_series");
    let list = dicom::list_series(&folder).expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].modality.as_str(), list[1].modality.as_str()),
        ("MR", "PT")
    );
    let e = dicom::read_series(&folder, None).expect_err("ambiguous");
    let text = e.to_string();
    assert!(
        text.contains("2 series") && text.contains("--series"),
        "{text}"
    );
    assert!(text.contains(&list[1].uid), "{text}");
    let (pet, info) = dicom::read_series(&folder, Some("2")).expect("by number");
    assert_eq!(info.units, Units::Suv);
    let (by_uid, _) = dicom::read_series(&folder, Some(&list[0].uid)).expect("by uid");
    assert_eq!(max_diff(&by_uid, &reference("reference_mr.nii.gz")), 0.0);
    assert!(max_diff(&pet, &reference("reference_pet_suv.nii.gz")) < 1e-3);
    let e = dicom::read_series(&folder, Some("7")).expect_err("no such series");
    assert!(e.to_string().contains("no series '7'"), "{e}");
}

#[test]
fn pydicom_objects_decode_alike_in_every_supported_transfer_syntax() {
    let (plain, info) = dicom::read_series(&data("pydicom/MR_small.dcm"), None).expect("MR_small");
    assert_eq!(plain.grid.dims, [64, 64, 1]);
    assert!(info.transfer_syntax.contains("Explicit VR Little Endian"));
    for f in [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        let (v, _) = dicom::read_series(&data(&format!("pydicom/{f}")), None).expect(f);
        assert_same_geometry(&v, &plain, f);
        assert_eq!(v.data, plain.data, "{f}");
    }
    // A volume beyond the stated memory limit is refused before decoding.
    let bytes = std::fs::read(data("pydicom/MR_small.dcm")).expect("bytes");
    let e = dicom::read_bytes(&bytes, "MR_small.dcm", Some(1000)).expect_err("limit");
    assert!(matches!(e.kind, K::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("the stated limit"), "{e}");
    // CT in Hounsfield units: air and bone around a head phantom.
    let (ct, info) = dicom::read_series(&data("pydicom/CT_small.dcm"), None).expect("CT");
    assert_eq!(info.units, Units::Hu);
    let (lo, hi) = ct.range(0).expect("range");
    assert!(lo < -800.0 && hi > 1000.0, "{lo}..{hi}");
    // What this build cannot decode is refused by name.
    for (f, needle) in [
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS"),
        ("JPEG-lossy.dcm", "JPEG Extended"),
        ("MR_truncated.dcm", "not a readable DICOM file"),
    ] {
        let e = dicom::read_series(&data(&format!("pydicom/{f}")), None).expect_err(f);
        let text = e.to_string();
        assert!(matches!(e.kind, K::Dicom(_)), "{f}: {text}");
        assert!(text.contains(needle) && text.contains(f), "{f}: {text}");
    }
}

/// Copy a series into a scratch folder, changing some of its files.
fn altered(name: &str, change: impl Fn(usize, &mut dicom_object::DefaultDicomObject)) -> PathBuf {
    let dir = scratch_dir(&format!("dicom_{name}"));
    for k in 0..20 {
        let src = data(&format!("mr/IM{k:04}.dcm"));
        let mut obj = dicom_object::open_file(&src).expect("open");
        change(k, &mut obj);
        obj.write_to_file(dir.join(format!("IM{k:04}.dcm")))
            .expect("write");
    }
    dir
}

fn refusal(dir: &Path) -> String {
    let e = dicom::read_series(dir, None).expect_err("refused");
    assert!(matches!(e.kind, K::Dicom(_)), "{e}");
    e.to_string()
}

#[test]
fn broken_stacks_are_refused_with_the_files_named() {
    let text = refusal(&data("mr_missing_slice"));
    assert!(
        text.contains("missing") && text.contains("IM0041.dcm"),
        "{text}"
    );

    // The first 20 slices read as a stack of their own …
    let ok = altered("ok", |_, _| {});
    let (v, _) = dicom::read_series(&ok, None).expect("20 slices");
    assert_eq!(v.grid.dims[2], 20);

    // … but not with a duplicate position (another instance, same place),
    let dup = altered("duplicate", |k, o| {
        if k == 5 {
            let ipp = o
                .element(tags::IMAGE_POSITION_PATIENT)
                .expect("ipp")
                .to_multi_float64()
                .expect("ipp");
            let moved = format!("{}\\{}\\{}", ipp[0], ipp[1], ipp[2] - 2.0);
            o.put_str(tags::IMAGE_POSITION_PATIENT, VR::DS, moved);
        }
    });
    assert!(refusal(&dup).contains("same position"), "{}", refusal(&dup));

    // a slice turned another way,
    let turned = altered("orientation", |k, o| {
        if k == 7 {
            o.put_str(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\0\\-1");
        }
    });
    let text = refusal(&turned);
    assert!(
        text.contains("IM0007.dcm") && text.contains("orientation"),
        "{text}"
    );

    // a slice of another size,
    let sized = altered("size", |k, o| {
        if k == 3 {
            o.put(dicom_core::DataElement::new(
                tags::ROWS,
                VR::US,
                dicom_core::PrimitiveValue::from(58u16),
            ));
        }
    });
    let text = refusal(&sized);
    assert!(
        text.contains("IM0003.dcm") && text.contains("size"),
        "{text}"
    );

    // a stack sheared sideways (gantry tilt: 1 mm along x per 2 mm slice),
    let tilted = altered("tilt", |k, o| {
        let ipp = o
            .element(tags::IMAGE_POSITION_PATIENT)
            .expect("ipp")
            .to_multi_float64()
            .expect("ipp");
        let moved = format!("{}\\{}\\{}", ipp[0] + k as f64, ipp[1], ipp[2]);
        o.put_str(tags::IMAGE_POSITION_PATIENT, VR::DS, moved);
    });
    assert!(
        refusal(&tilted).contains("gantry tilt"),
        "{}",
        refusal(&tilted)
    );

    // and not as images when they hold none.
    let reports = altered("no_images", |_, o| {
        o.remove_element(tags::ROWS);
        o.remove_element(tags::COLUMNS);
        o.remove_element(tags::PIXEL_DATA);
    });
    assert!(
        refusal(&reports).contains("no image"),
        "{}",
        refusal(&reports)
    );
}

#[test]
fn the_command_line_takes_dicom_wherever_it_takes_nifti() {
    let dir = scratch_dir("dicom_cli");
    let out = dir.join("mr.nii.gz");
    let (ok, _, err) = warpscope(&[
        "convert",
        data("two_series").to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
        "--series",
        "1",
    ]);
    assert!(ok, "{err}");
    let (v, _) = nifti::read_file(&out, ReadOptions::default()).expect("converted");
    let r = reference("reference_mr.nii.gz");
    assert_same_geometry(&v, &r, "converted");
    assert_eq!(max_diff(&v, &r), 0.0);

    let (ok, text, err) = warpscope(&[
        "info",
        "--list-series",
        data("two_series").to_str().expect("utf-8"),
    ]);
    assert!(ok, "{err}");
    assert!(
        text.contains("1. #1 MR") && text.contains("2. #2 PT"),
        "{text}"
    );
    let (ok, text, err) = warpscope(&["info", data("pet").to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(text.contains("SUV"), "{text}");

    // register on a DICOM pair gives what the same run on the NIfTI pair gives.
    let run = |fixed: PathBuf, moving: PathBuf, name: &str| {
        let o = dir.join(name);
        let (ok, _, err) = warpscope(&[
            "register",
            "--fixed",
            fixed.to_str().expect("utf-8"),
            "--moving",
            moving.to_str().expect("utf-8"),
            "--device",
            "cpu",
            "--set",
            "affine.iterations=10",
            "--set",
            "deformable.iterations=10,5,2",
            "--out",
            o.to_str().expect("utf-8"),
            "--quiet",
        ]);
        assert!(ok, "{name}: {err}");
        nifti::read_file(o.join("warped.nii.gz"), ReadOptions::default())
            .expect("warped")
            .0
    };
    let from_dicom = run(data("mr"), data("mr_oblique"), "dicom");
    let from_nifti = run(
        data("reference_mr.nii.gz"),
        data("reference_mr_oblique.nii.gz"),
        "nifti",
    );
    // The inputs agree to float32 rounding (the NIfTI's sform is float32,
    // DICOM's positions are decimal strings read in f64); Adam amplifies
    // such differences where a gradient is near 0, so the results agree
    // closely rather than bit for bit.
    assert_same_geometry(&from_dicom, &from_nifti, "warped");
    let mean_diff = from_dicom
        .data
        .iter()
        .zip(&from_nifti.data)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / from_nifti.data.len() as f64;
    eprintln!("warped from DICOM vs from NIfTI: mean |difference| {mean_diff:.4}");
    assert!(
        mean_diff < 0.1,
        "mean difference {mean_diff} (values 0–1000)"
    );
    // A DICOM image reads with its units through the generic opener.
    let (_, info) = read_image(&data("mr"), ReadOptions::default(), None).expect("mr");
    assert!(matches!(info, ImageInfo::Dicom(_)));
}

/// An enhanced multi-frame object, written here from 12 slices of the MR
/// series: frames out of order, positions per frame, orientation and pixel
/// size shared, a rescale per frame. It must read as those slices do.
#[test]
fn an_enhanced_multi_frame_object_reads_like_its_slices() {
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_object::mem::InMemDicomObject;
    use dicom_object::meta::FileMetaTableBuilder;

    let dir = scratch_dir("dicom_multiframe");
    let slices = altered("multiframe_slices", |_, _| {});
    let (stack, _) = dicom::read_series(&slices, None).expect("slices");
    let first = dicom_object::open_file(slices.join("IM0000.dcm")).expect("first");
    let copy = |tag| first.element(tag).expect("tag").clone();
    let item = |elements: Vec<DataElement<InMemDicomObject>>| {
        InMemDicomObject::from_element_iter(elements)
    };
    let seq = |tag, items: Vec<InMemDicomObject>| {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    };
    let mut pixels: Vec<u16> = Vec::new();
    let mut per_frame = Vec::new();
    for k in (0..12).rev() {
        let o = dicom_object::open_file(slices.join(format!("IM{k:04}.dcm"))).expect("slice");
        let bytes = o
            .element(tags::PIXEL_DATA)
            .expect("pixels")
            .to_bytes()
            .expect("bytes");
        pixels.extend(
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        );
        let ipp = o
            .element(tags::IMAGE_POSITION_PATIENT)
            .expect("ipp")
            .clone();
        per_frame.push(item(vec![
            seq(tags::PLANE_POSITION_SEQUENCE, vec![item(vec![ipp])]),
            seq(
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                vec![item(vec![
                    DataElement::new(tags::RESCALE_SLOPE, VR::DS, "1"),
                    DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, format!("{}", 10 * k)),
                ])],
            ),
        ]));
    }
    let shared = item(vec![
        seq(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![item(vec![copy(tags::IMAGE_ORIENTATION_PATIENT)])],
        ),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item(vec![
                copy(tags::PIXEL_SPACING),
                copy(tags::SLICE_THICKNESS),
            ])],
        ),
    ]);
    let sop_class = "1.2.840.10008.5.1.4.1.1.4.1"; // Enhanced MR Image Storage
    let instance = "1.2.826.0.1.3680043.8.498.1.2.3.4";
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, sop_class),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, instance),
        DataElement::new(tags::MODALITY, VR::CS, "MR"),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.8.498.9",
        ),
        DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, "12"),
        copy(tags::ROWS),
        copy(tags::COLUMNS),
        copy(tags::BITS_ALLOCATED),
        copy(tags::BITS_STORED),
        copy(tags::HIGH_BIT),
        copy(tags::PIXEL_REPRESENTATION),
        copy(tags::SAMPLES_PER_PIXEL),
        copy(tags::PHOTOMETRIC_INTERPRETATION),
        seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
    ]);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(instance),
        )
        .expect("meta");
    let path = dir.join("enhanced.dcm");
    file.write_to_file(&path).expect("write");

    let (v, info) = dicom::read_series(&path, None).expect("multi-frame");
    assert_eq!(info.slices, 12);
    assert_eq!(v.grid.dims, [stack.grid.dims[0], stack.grid.dims[1], 12]);
    let mut first_twelve = stack.clone();
    first_twelve.grid.dims[2] = 12;
    first_twelve
        .data
        .truncate(12 * stack.grid.dims[0] * stack.grid.dims[1]);
    assert_same_geometry(&v, &first_twelve, "multi-frame");
    let per = v.grid.dims[0] * v.grid.dims[1];
    for k in 0..12 {
        for i in (0..per).step_by(97) {
            let want = stack.data[k * per + i] + 10.0 * k as f32;
            assert_eq!(v.data[k * per + i], want, "frame {k}, pixel {i}");
        }
    }
}

/// Inputs the fuzz target found: a damaged RLE stream that made the
/// third-party decoder panic, a 10 KB file whose element claims 3 GB
/// (dicom-parser reserves a declared length before reading it; twice, the
/// second through a meta group whose length disagrees with its elements),
/// and an RLE header claiming 1.3 G segments (the decoder sizes a buffer by
/// it). Each is refused with a message; none panics or allocates.
#[test]
fn fuzz_findings_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
    for (file, needle) in [
        ("dicom_rle_decoder_panic.dcm", "cannot be decoded"),
        ("dicom_3gb_element_claim.dcm", "claims"),
        ("dicom_meta_length_desync.dcm", "not a readable DICOM file"),
        ("dicom_rle_segment_count.dcm", "RLE fragment"),
        ("dicom_cut_meta_group.dcm", "not a readable DICOM file"),
    ] {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).expect("regression input");
        let e = dicom::read_bytes(&bytes, file, Some(1 << 30)).expect_err(file);
        assert!(e.to_string().contains(needle), "{file}: {e}");
        let e = dicom::read_series(&path, None).expect_err(file);
        assert!(e.to_string().contains(file), "{file}: {e}");
    }
}
