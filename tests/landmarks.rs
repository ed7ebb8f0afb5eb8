//! Landmark files: every format round-trips, coordinates land where the
//! file's convention says, malformed lines are named.

mod common;

use common::{scratch_dir, shared};
use warpscope::landmarks::formats::{
    CoordinateSystem, IndexBase, Side, parse_brats_csv, parse_fcsv, parse_mrk_json, parse_pair_csv,
    read_set, write_brats_csv, write_fcsv, write_mrk_json, write_pair_csv,
};
use warpscope::landmarks::{Landmark, LandmarkSet, pair_by_id};
use warpscope::volume::Grid;
use warpscope::volume::affine::Mat4;

fn close(a: [f64; 3], b: [f64; 3]) -> bool {
    (0..3).all(|i| (a[i] - b[i]).abs() < 1e-9)
}

fn same_points(a: &LandmarkSet, b: &LandmarkSet) {
    assert_eq!(a.points.len(), b.points.len());
    for (p, q) in a.points.iter().zip(&b.points) {
        assert_eq!(p.id, q.id);
        assert!(close(p.ras_mm, q.ras_mm), "{p:?} vs {q:?}");
    }
}

#[test]
fn pair_csv_round_trip_keeps_extra_columns() {
    let path = shared("pairs/brain2mm_resect/landmarks.csv");
    let text = std::fs::read_to_string(&path).expect("shared landmarks");
    let (f, m) = parse_pair_csv(&text, "landmarks.csv").expect("parse");
    assert_eq!(f.points.len(), 120);
    assert_eq!(f.points[0].id, "0");
    assert!(close(f.points[0].ras_mm, [-3.0309, -81.5478, -11.3548]));
    assert!(close(m.points[0].ras_mm, [-8.9290, -81.3940, -11.2812]));
    let in_resection = f
        .points
        .iter()
        .filter(|p| p.extra("in_resection") == Some("1"))
        .count();
    assert!(in_resection > 0);
    let dir = scratch_dir("lm_pair");
    let out = dir.join("copy.csv");
    write_pair_csv(&out, &f, &m).expect("write");
    let f2 = read_set(&out, None, IndexBase::Zero, Side::Fixed).expect("read fixed");
    let m2 = read_set(&out, None, IndexBase::Zero, Side::Moving).expect("read moving");
    same_points(&f, &f2);
    same_points(&m, &m2);
    assert_eq!(
        f2.points
            .iter()
            .filter(|p| p.extra("in_resection") == Some("1"))
            .count(),
        in_resection
    );
}

/// Oblique grid: 30° about z, 1.5 mm voxels, origin (7, −3, 11).
fn oblique() -> Grid {
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let a: Mat4 = [
        [1.5 * c, -1.5 * s, 0.0, 7.0],
        [1.5 * s, 1.5 * c, 0.0, -3.0],
        [0.0, 0.0, 1.5, 11.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Grid::new([100, 100, 60], a)
}

#[test]
fn brats_csv_voxel_indices_land_at_the_right_world_point() {
    let text = "Landmark,X,Y,Z,note\n1,2,1,1,first\n2,10,20,30,\"with, comma\"\n";
    let g = oblique();
    let set = parse_brats_csv(text, "lm.csv", &g, IndexBase::Zero).expect("parse");
    // Voxel (2, 1, 1) by hand: x = 1.5·(cos30·2 − sin30·1) + 7, y = 1.5·(sin30·2 + cos30·1) − 3, z = 12.5.
    assert!(
        close(
            set.points[0].ras_mm,
            [8.848076211353316, -0.2009618943233418, 12.5]
        ),
        "{:?}",
        set.points[0]
    );
    assert_eq!(set.points[1].extra("note"), Some("with, comma"));
    // 1-based indices shift by one voxel along each axis.
    let one = parse_brats_csv(text, "lm.csv", &g, IndexBase::One).expect("parse");
    assert!(close(
        one.points[0].ras_mm,
        g.voxel_to_world([1.0, 0.0, 0.0])
    ));
    let dir = scratch_dir("lm_brats");
    let out = dir.join("back.csv");
    write_brats_csv(&out, &set, &g, IndexBase::Zero).expect("write");
    let written = std::fs::read_to_string(&out).expect("read");
    assert!(
        written.starts_with("Landmark,X,Y,Z,note\n1,2,1,1,first\n"),
        "{written}"
    );
    let back = read_set(&out, Some(&g), IndexBase::Zero, Side::Fixed).expect("read");
    same_points(&set, &back);
}

#[test]
fn slicer_fcsv_in_lps_lands_at_the_right_ras_point() {
    let text = "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n\
vtkMRMLMarkupsFiducialNode_0,-10.5,-20,30,0,0,0,1,1,1,0,F-1,tumour rim,vtkMRMLScalarVolumeNode1\n\
vtkMRMLMarkupsFiducialNode_1,1,2,3,0,0,0,1,1,1,0,F-2,,\n";
    let set = parse_fcsv(text, "a.fcsv").expect("parse");
    assert_eq!(set.points[0].id, "F-1");
    assert!(close(set.points[0].ras_mm, [10.5, 20.0, 30.0]));
    assert_eq!(set.points[0].extra("desc"), Some("tumour rim"));
    // Old numeric header: 0 = RAS.
    let ras = parse_fcsv(
        &text.replace("CoordinateSystem = LPS", "CoordinateSystem = 0"),
        "b.fcsv",
    )
    .expect("parse");
    assert!(close(ras.points[0].ras_mm, [-10.5, -20.0, 30.0]));
    let dir = scratch_dir("lm_fcsv");
    for cs in [CoordinateSystem::Lps, CoordinateSystem::Ras] {
        let out = dir.join(format!("{cs:?}.fcsv"));
        write_fcsv(&out, &set, cs).expect("write");
        let back = read_set(&out, None, IndexBase::Zero, Side::Fixed).expect("read");
        same_points(&set, &back);
        assert_eq!(back.points[0].extra("desc"), Some("tumour rim"));
        assert_eq!(
            back.points[0].extra("associatedNodeID"),
            Some("vtkMRMLScalarVolumeNode1")
        );
    }
}

#[test]
fn slicer_mrk_json_round_trip_keeps_unknown_fields() {
    let text = r#"{"@schema": "x", "markups": [{"type": "Fiducial", "coordinateSystem": "LPS",
      "controlPoints": [
        {"id": "1", "label": "AC", "position": [-1.0, -2.0, 3.0], "description": "anterior commissure", "locked": true},
        {"id": "2", "label": "PC", "position": [0.0, 25.0, 1.0]},
        {"id": "3", "label": "unplaced", "positionStatus": "undefined"}
      ]}]}"#;
    let set = parse_mrk_json(text, "a.mrk.json").expect("parse");
    assert_eq!(set.points.len(), 2, "undefined points are skipped");
    assert!(close(set.points[0].ras_mm, [1.0, 2.0, 3.0]));
    assert!(close(set.points[1].ras_mm, [0.0, -25.0, 1.0]));
    let dir = scratch_dir("lm_mrk");
    let out = dir.join("out.mrk.json");
    write_mrk_json(&out, &set, CoordinateSystem::Ras).expect("write");
    let back = read_set(&out, None, IndexBase::Zero, Side::Fixed).expect("read");
    same_points(&set, &back);
    assert_eq!(
        back.points[0].extra("description"),
        Some("\"anterior commissure\"")
    );
    assert_eq!(back.points[0].extra("locked"), Some("true"));
}

#[test]
fn malformed_files_name_the_line() {
    let e = parse_pair_csv(
        "id,fx,fy,fz,mx,my,mz\n0,1,2,3,4,5,6\n1,1,2,x,4,5,6\n",
        "bad.csv",
    )
    .expect_err("bad number");
    assert_eq!(e.line, Some(3));
    assert!(
        e.to_string().starts_with("bad.csv:3:") && e.to_string().contains("fz"),
        "{e}"
    );
    let e = parse_pair_csv("id,fx,fy,fz,mx,my,mz\n0,1,2,3\n", "short.csv").expect_err("short row");
    assert_eq!(e.line, Some(2));
    let e = parse_brats_csv(
        "Landmark,X,Y,Z\n1,2,nan,4\n",
        "n.csv",
        &oblique(),
        IndexBase::Zero,
    )
    .expect_err("nan");
    assert_eq!(e.line, Some(2));
    let e = parse_fcsv("# CoordinateSystem = XYZ\n", "c.fcsv").expect_err("bad system");
    assert_eq!(e.line, Some(1));
    assert!(
        parse_mrk_json(
            "{\"markups\": [{\"controlPoints\": [{\"position\": [1, 2]}]}]}",
            "m.json"
        )
        .is_err()
    );
    let dir = scratch_dir("lm_unknown");
    let p = dir.join("points.txt");
    std::fs::write(&p, "a b c\n").expect("write");
    let e = read_set(&p, None, IndexBase::Zero, Side::Fixed).expect_err("unknown format");
    assert!(e.to_string().contains("unknown landmark format"), "{e}");
}

#[test]
fn pairing_reports_what_does_not_pair() {
    let f = LandmarkSet::new(vec![
        Landmark::new("1", [0.0; 3]),
        Landmark::new("2", [0.0; 3]),
        Landmark::new("2", [1.0; 3]),
    ]);
    let m = LandmarkSet::new(vec![
        Landmark::new("2", [0.0; 3]),
        Landmark::new("3", [0.0; 3]),
    ]);
    let p = pair_by_id(&f, &m);
    assert_eq!(p.pairs, vec![(1, 0)]);
    assert_eq!(p.fixed_only, vec!["1".to_string()]);
    assert_eq!(p.moving_only, vec!["3".to_string()]);
    assert_eq!(p.duplicates, vec!["2".to_string()]);
    assert!(
        p.notice()
            .expect("something unpaired")
            .contains("without a moving partner (1)")
    );
}
