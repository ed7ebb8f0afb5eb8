//! The WGSL renderer, drawn offscreen on a real wgpu device (lavapipe on
//! machines without a GPU). Every composite mode and overlay is drawn on a
//! small synthetic scene and its pixels compared with what the maths says:
//! CPU reslicing, tile boundaries, grey where images agree, the colour-map
//! value of a known det J, straight grid lines of a zero field, folds.

#![allow(clippy::needless_range_loop)]

mod common;

use common::{noise, scaling_disp_vox};
use warpscope::metrics::{FieldKind, Mapping, jacobian};
use warpscope::render::colormap::{self, ColorMap, lut_sample};
use warpscope::render::offscreen::{FORMAT, Target, ViewDraw};
use warpscope::render::{
    Composite, CompositeUniform, Convention, FieldCompute, GpuScene, GpuVolume, ImageStyle,
    JacobianStyle, Map, Mode, Overlays, Plane, Present, Readback, SliceView, Slot,
};
use warpscope::volume::affine::{self, Mat4};
use warpscope::volume::resample::{Border, Interp, Sampler};
use warpscope::volume::{Grid, Volume};

fn device() -> warpscope::gpu::Headless {
    match warpscope::gpu::headless() {
        Ok(d) => d,
        Err(e) => {
            panic!("{e}\n(the render tests need a Vulkan driver; CI installs mesa-vulkan-drivers)")
        }
    }
}

/// A device, a scene and an offscreen target of W × H pixels.
struct Bench {
    gpu: warpscope::gpu::Headless,
    scene: GpuScene,
    target: Target,
    compute: FieldCompute,
    size: [u32; 2],
}

impl Bench {
    fn new(w: u32, h: u32) -> Self {
        let gpu = device();
        let scene = GpuScene::new(&gpu.device, &gpu.queue, FORMAT);
        let target = Target::new(&gpu.device, [w, h]);
        let compute = FieldCompute::new(&gpu.device);
        Self {
            gpu,
            scene,
            target,
            compute,
            size: [w, h],
        }
    }

    fn upload(&self, vol: &Volume) -> GpuVolume {
        GpuVolume::scalar(
            &self.gpu.device,
            &self.gpu.queue,
            "test",
            vol.grid.dims,
            vol.channel(0),
        )
        .expect("upload")
    }

    fn set(&mut self, slot: Slot, vol: &Volume) {
        let t = self.upload(vol);
        self.scene.set_image(slot, Some(t));
    }

    /// Upload a field (voxel displacement, 3 channels) and compute det J on the GPU.
    fn set_field(&mut self, disp_vox: &Volume) -> Vec<f32> {
        let (d, q) = (&self.gpu.device, &self.gpu.queue);
        let f = GpuVolume::field(d, q, "field", disp_vox.grid.dims, &disp_vox.data).expect("field");
        let jac = self.compute.jacobian(d, q, &f).expect("det J");
        let values = Readback::start(d, q, &jac)
            .expect("readback")
            .wait(d)
            .expect("det J values");
        self.scene.set_map(Map::Field, Some(f));
        self.scene.set_map(Map::Jacobian, Some(jac));
        values
    }

    fn set_map(&mut self, map: Map, vol: &Volume) {
        let t = self.upload(vol);
        self.scene.set_map(map, Some(t));
    }

    /// Draw one view filling the target; RGBA8 pixels.
    fn draw(
        &mut self,
        view: &SliceView,
        present: &Present,
        composite: &Composite,
        overlays: &Overlays,
        a: Slot,
        b: Slot,
    ) -> Vec<u8> {
        let size = [f64::from(self.size[0]), f64::from(self.size[1])];
        let uniform =
            CompositeUniform::new(view, size, present, composite, overlays).expect("uniform");
        let draw = ViewDraw {
            id: 0,
            a,
            b,
            uniform,
            viewport: [0, 0, self.size[0], self.size[1]],
        };
        self.target.draw(
            &self.gpu.device,
            &self.gpu.queue,
            &mut self.scene,
            &[draw],
            wgpu::Color::RED,
        );
        self.target
            .read(&self.gpu.device, &self.gpu.queue)
            .expect("read back")
    }

    fn px(&self, pixels: &[u8], x: u32, y: u32) -> [u8; 4] {
        let i = ((y * self.size[0] + x) * 4) as usize;
        [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]]
    }
}

fn grey(window: (f32, f32)) -> ImageStyle {
    ImageStyle {
        window,
        colormap: ColorMap::Grey,
    }
}

fn constant(grid: &Grid, v: f32) -> Volume {
    Volume::filled(grid.clone(), 1, v)
}

/// 1 mm voxels, shifted by a quarter millimetre so that no pixel centre
/// falls exactly on a tile or grid-line boundary.
fn test_grid(dims: [usize; 3]) -> Grid {
    let mut a = affine::diagonal([1.0; 3]);
    a[0][3] = 0.25;
    a[1][3] = 0.25;
    Grid::new(dims, a)
}

fn to_u8(c: [f32; 3]) -> [f32; 3] {
    c.map(|v| v * 255.0)
}

fn close(px: [u8; 4], want: [f32; 3], tol: f32) -> bool {
    (0..3).all(|c| (f32::from(px[c]) - want[c]).abs() <= tol)
}

fn lps_oblique() -> Mat4 {
    let (c, s) = (0.35f64.cos(), 0.35f64.sin());
    [
        [-1.6 * c, 1.3 * s, 0.0, 20.0],
        [-1.6 * s, -1.3 * c, 0.0, 15.0],
        [0.0, 0.0, 2.2, -9.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[test]
fn single_image_matches_cpu_reslicing_in_every_plane_and_convention() {
    const W: u32 = 64;
    const H: u32 = 48;
    let mut bench = Bench::new(W, H);
    let dims = [19, 14, 11];
    let vol = Volume::from_data(
        Grid::new(dims, lps_oblique()),
        1,
        noise(dims.iter().product(), 21),
    )
    .expect("sizes");
    bench.set(Slot::Fixed, &vol);
    let window = (0.1, 0.9);
    let present = Present {
        a: Some((&vol.grid, grey(window))),
        ..Default::default()
    };
    let mut compared = 0;
    for plane in Plane::ALL {
        for convention in [Convention::Radiological, Convention::Neurological] {
            let mut view = SliceView::centred(plane, &vol.grid, convention);
            view.position_mm += 0.37; // between voxel centres: interpolation along the normal
            view.zoom = 1.3;
            let pixels = bench.draw(
                &view,
                &present,
                &Composite::default(),
                &Overlays::default(),
                Slot::Fixed,
                Slot::Moving,
            );
            let (mut bad, mut inside) = (0, 0);
            for y in 0..H {
                for x in 0..W {
                    let px = bench.px(&pixels, x, y);
                    let size = [f64::from(W), f64::from(H)];
                    let uv = [
                        (f64::from(x) + 0.5) / size[0],
                        (f64::from(y) + 0.5) / size[1],
                    ];
                    let p = vol
                        .grid
                        .world_to_voxel(view.world_at(uv, size))
                        .expect("invertible");
                    let outside = (0..3).any(|a| p[a] < -0.5 || p[a] > dims[a] as f64 - 0.5);
                    if outside {
                        // Background is black and opaque (the red clear colour never shows).
                        if px != [0, 0, 0, 255] {
                            bad += 1;
                        }
                        continue;
                    }
                    inside += 1;
                    let v = Sampler {
                        dims,
                        border: Border::Clamp,
                    }
                    .linear(vol.channel(0), p);
                    let g = ((v - window.0) / (window.1 - window.0)).clamp(0.0, 1.0) * 255.0;
                    if !(px[0] == px[1] && px[1] == px[2] && (f32::from(px[0]) - g).abs() <= 1.5) {
                        bad += 1;
                    }
                }
            }
            // Pixels whose centre falls within float rounding of the volume edge may differ.
            assert!(
                bad <= (W + H) as usize / 4,
                "{plane:?} {convention:?}: {bad} pixels differ"
            );
            assert!(inside > (W * H / 4) as usize, "{plane:?}: {inside} inside");
            compared += inside;
        }
    }
    assert!(compared > 0);
}

#[test]
fn radiological_axial_view_shows_the_patients_right_on_the_left() {
    // Bright on the patient's right half (x > 0 in RAS), stored LPS.
    let a: Mat4 = [
        [-1.0, 0.0, 0.0, 15.5],
        [0.0, -1.0, 0.0, 7.5],
        [0.0, 0.0, 1.0, -2.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let grid = Grid::new([32, 16, 4], a);
    let mut vol = Volume::filled(grid.clone(), 1, 0.0);
    for i in 0..vol.data.len() {
        let p = warpscope::volume::voxel_of(i, grid.dims);
        if affine::apply(&grid.affine, p)[0] > 0.0 {
            vol.data[i] = 1.0;
        }
    }
    let mut bench = Bench::new(64, 48);
    bench.set(Slot::Fixed, &vol);
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        ..Default::default()
    };
    for (convention, bright_left) in [
        (Convention::Radiological, true),
        (Convention::Neurological, false),
    ] {
        let view = SliceView::centred(Plane::Axial, &grid, convention);
        let p = bench.draw(
            &view,
            &present,
            &Composite::default(),
            &Overlays::default(),
            Slot::Fixed,
            Slot::Moving,
        );
        assert_eq!(bench.px(&p, 4, 24)[0] > 128, bright_left, "{convention:?}");
        assert_eq!(
            bench.px(&p, 59, 24)[0] > 128,
            !bright_left,
            "{convention:?}"
        );
    }
}

/// Two constant images (0.2 and 0.8) on a 64 × 48 mm grid drawn 1 px per mm.
fn two_constants(bench: &mut Bench) -> (Grid, SliceView) {
    let grid = test_grid([64, 48, 4]);
    bench.set(Slot::Fixed, &constant(&grid, 0.2));
    bench.set(Slot::Moving, &constant(&grid, 0.8));
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Radiological);
    assert!((view.mm_per_pixel([64.0, 48.0]) - 1.0).abs() < 1e-12);
    (grid, view)
}

#[test]
fn checkerboard_of_two_constant_images_alternates_exactly_at_the_tile_size() {
    let mut bench = Bench::new(64, 48);
    let (grid, view) = two_constants(&mut bench);
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        b: Some((&grid, grey((0.0, 1.0)))),
        ..Default::default()
    };
    let tile = 8.0;
    let composite = Composite {
        mode: Mode::Checkerboard,
        tile_mm: tile,
        ..Default::default()
    };
    let p = bench.draw(
        &view,
        &present,
        &composite,
        &Overlays::default(),
        Slot::Fixed,
        Slot::Moving,
    );
    let (a, b) = (51.0, 204.0); // 0.2 and 0.8 of 255
    let mut changes_per_row = Vec::new();
    for y in 0..48 {
        let mut changes = Vec::new();
        for x in 0..64 {
            let w = view.world_at(
                [(x as f64 + 0.5) / 64.0, (y as f64 + 0.5) / 48.0],
                [64.0, 48.0],
            );
            let t = f64::from(tile);
            let parity = ((w[0] / t).floor() + (w[1] / t).floor()).rem_euclid(2.0);
            let want = if parity < 0.5 { a } else { b };
            let px = bench.px(&p, x, y);
            assert!(
                close(px, [want; 3], 1.0),
                "pixel ({x}, {y}): {px:?}, want {want}"
            );
            if x > 0 && bench.px(&p, x - 1, y)[0] != px[0] {
                changes.push(x);
            }
        }
        changes_per_row.push(changes);
    }
    // Along every row the colour changes every 8 pixels (= 8 mm), at the same columns.
    for changes in &changes_per_row {
        assert_eq!(changes, &changes_per_row[0]);
        assert!(changes.len() >= 6, "{changes:?}");
        for w in changes.windows(2) {
            assert_eq!(w[1] - w[0], 8, "{changes:?}");
        }
    }
}

#[test]
fn green_magenta_of_identical_images_is_grey_and_differs_where_they_differ() {
    let mut bench = Bench::new(48, 48);
    let grid = test_grid([24, 24, 6]);
    let vol = Volume::from_data(grid.clone(), 1, noise(grid.voxels(), 5)).expect("sizes");
    bench.set(Slot::Fixed, &vol);
    bench.set(Slot::Moving, &vol);
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        b: Some((&grid, grey((0.0, 1.0)))),
        ..Default::default()
    };
    let view = SliceView::centred(Plane::Coronal, &grid, Convention::Neurological);
    let gm = Composite {
        mode: Mode::GreenMagenta,
        ..Default::default()
    };
    let p = bench.draw(
        &view,
        &present,
        &gm,
        &Overlays::default(),
        Slot::Fixed,
        Slot::Moving,
    );
    let mut shades = std::collections::BTreeSet::new();
    for y in 0..48 {
        for x in 0..48 {
            let px = bench.px(&p, x, y);
            assert!(
                px[0] == px[1] && px[1] == px[2],
                "({x}, {y}) not grey: {px:?}"
            );
            shades.insert(px[0]);
        }
    }
    assert!(shades.len() > 20, "a real image, not one flat grey");
    // A brighter B turns magenta, a brighter A green.
    bench.set(Slot::Moving, &constant(&grid, 1.0));
    bench.set(Slot::Fixed, &constant(&grid, 0.0));
    let p = bench.draw(
        &view,
        &present,
        &gm,
        &Overlays::default(),
        Slot::Fixed,
        Slot::Moving,
    );
    assert_eq!(bench.px(&p, 24, 24), [255, 0, 255, 255]);
    let p = bench.draw(
        &view,
        &present,
        &gm,
        &Overlays::default(),
        Slot::Moving,
        Slot::Fixed,
    );
    assert_eq!(bench.px(&p, 24, 24), [0, 255, 0, 255]);
}

#[test]
fn difference_blend_flicker_and_swipe_follow_their_formulas() {
    let mut bench = Bench::new(64, 48);
    let (grid, view) = two_constants(&mut bench);
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        b: Some((&grid, grey((0.0, 1.0)))),
        ..Default::default()
    };
    let o = Overlays::default();
    let (fx, mv) = (Slot::Fixed, Slot::Moving);
    let draw = |bench: &mut Bench, c: Composite, present: &Present| {
        bench.draw(&view, present, &c, &o, fx, mv)
    };
    // |0.2 − 0.8| = 0.6 through A's grey map.
    let p = draw(
        &mut bench,
        Composite {
            mode: Mode::Difference,
            ..Default::default()
        },
        &present,
    );
    assert!(
        close(bench.px(&p, 30, 20), [153.0; 3], 1.0),
        "{:?}",
        bench.px(&p, 30, 20)
    );
    // 0.75·0.2 + 0.25·0.8 = 0.35.
    let p = draw(
        &mut bench,
        Composite {
            mode: Mode::Blend,
            blend: 0.25,
            ..Default::default()
        },
        &present,
    );
    assert!(
        close(bench.px(&p, 30, 20), [89.25; 3], 1.0),
        "{:?}",
        bench.px(&p, 30, 20)
    );
    // Flicker shows one image whole, then the other.
    let flick = Composite {
        mode: Mode::Flicker,
        ..Default::default()
    };
    let p = draw(&mut bench, flick.clone(), &present);
    assert!(close(bench.px(&p, 10, 10), [51.0; 3], 1.0));
    let shows_b = Present {
        flicker_shows_b: true,
        ..present
    };
    let p = draw(&mut bench, flick, &shows_b);
    assert!(close(bench.px(&p, 10, 10), [204.0; 3], 1.0));
    // Swipe at a quarter: A on the 16 columns left of the divider, B right of it.
    let p = draw(
        &mut bench,
        Composite {
            mode: Mode::Swipe,
            swipe: 0.25,
            ..Default::default()
        },
        &present,
    );
    for x in 0..64 {
        let want = if x < 16 { 51.0 } else { 204.0 };
        assert!(close(bench.px(&p, x, 30), [want; 3], 1.0), "column {x}");
    }
}

#[test]
fn colour_maps_in_the_shader_equal_the_rust_definition() {
    let mut bench = Bench::new(64, 8);
    // A ramp along x: voxel i holds i / 63.
    let grid = test_grid([64, 8, 1]);
    let mut ramp = Volume::filled(grid.clone(), 1, 0.0);
    for i in 0..ramp.data.len() {
        ramp.data[i] = (i % 64) as f32 / 63.0;
    }
    bench.set(Slot::Fixed, &ramp);
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Neurological);
    for map in ColorMap::IMAGE {
        let present = Present {
            a: Some((
                &grid,
                ImageStyle {
                    window: (0.0, 1.0),
                    colormap: map,
                },
            )),
            ..Default::default()
        };
        let c = Composite {
            interpolate: false,
            ..Default::default()
        };
        let p = bench.draw(
            &view,
            &present,
            &c,
            &Overlays::default(),
            Slot::Fixed,
            Slot::Moving,
        );
        for x in 0..64 {
            let want = to_u8(lut_sample(map, x as f32 / 63.0));
            let got = bench.px(&p, x, 4);
            assert!(close(got, want, 1.5), "{map:?} at {x}: {got:?} vs {want:?}");
        }
    }
}

/// A field moving every point `vox` voxels along x.
fn shift_x(grid: &Grid, vox: f32) -> Volume {
    let mut shift = Volume::filled(grid.clone(), 3, 0.0);
    shift.channel_mut(0).fill(vox);
    shift
}

#[test]
fn uniform_scaling_shows_the_colour_of_det_j_1_331() {
    let mut bench = Bench::new(40, 40);
    let grid = test_grid([20, 20, 20]);
    let det = bench.set_field(&scaling_disp_vox(&grid, 1.1));
    assert!(
        det.iter().all(|d| (d - 1.331).abs() < 1e-4),
        "det J of a uniform 1.1 scaling is 1.331 everywhere, borders included"
    );
    let present = Present {
        field: Some(&grid),
        jacobian: true,
        ..Default::default()
    };
    let mut o = Overlays::default();
    o.jacobian.on = true;
    o.jacobian.opacity = 1.0;
    o.jacobian.fade = false;
    o.jacobian.range = 2.0;
    for plane in Plane::ALL {
        let view = SliceView::centred(plane, &grid, Convention::Radiological);
        for style in [JacobianStyle::Log, JacobianStyle::Signed] {
            o.jacobian.style = style;
            let (map, t) = match style {
                JacobianStyle::Log => (
                    ColorMap::JacobianLog,
                    colormap::jacobian_log_t(1.331, 2.0).expect("positive"),
                ),
                JacobianStyle::Signed => (
                    ColorMap::JacobianSigned,
                    colormap::jacobian_signed_t(1.331, 2.0),
                ),
            };
            let want = to_u8(lut_sample(map, t));
            let p = bench.draw(
                &view,
                &present,
                &Composite::default(),
                &o,
                Slot::Fixed,
                Slot::Moving,
            );
            for y in 0..40 {
                for x in 0..40 {
                    let got = bench.px(&p, x, y);
                    assert!(
                        close(got, want, 1.5),
                        "{plane:?} {style:?} ({x}, {y}): {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
    // Fading: det J = 1 (the identity) leaves the image underneath untouched.
    bench.set_field(&scaling_disp_vox(&grid, 1.0));
    bench.set(Slot::Fixed, &constant(&grid, 0.4));
    o.jacobian.style = JacobianStyle::Log;
    o.jacobian.fade = true;
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        ..present
    };
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Radiological);
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    assert!(
        close(bench.px(&p, 20, 20), [102.0; 3], 1.0),
        "{:?}",
        bench.px(&p, 20, 20)
    );
}

#[test]
fn a_fold_renders_in_the_fold_colour_and_gpu_det_j_equals_the_metric() {
    let grid = test_grid([24, 16, 6]);
    let n = grid.voxels();
    // u_x = −2(x − 8) for 8 ≤ x ≤ 12: the map reverses x there (det J = −1).
    let mut disp = Volume::filled(grid.clone(), 3, 0.0);
    for i in 0..n {
        let x = (i % 24) as f32;
        disp.data[i] = -2.0 * (x.clamp(8.0, 12.0) - 8.0);
    }
    let mut bench = Bench::new(48, 32);
    let det = bench.set_field(&disp);
    // The metric computes det J from mapped coordinates on the CPU.
    let mapping = Mapping::from_field(&disp, FieldKind::DispVox, &grid)
        .expect("mapping")
        .0;
    let cpu = jacobian::determinant(&mapping);
    for i in 0..n {
        assert!(
            (det[i] - cpu.data[i]).abs() < 1e-4,
            "voxel {i}: {} vs {}",
            det[i],
            cpu.data[i]
        );
    }
    assert!(
        det.iter().any(|&d| (d + 1.0).abs() < 1e-5),
        "the band folds"
    );
    let present = Present {
        field: Some(&grid),
        jacobian: true,
        ..Default::default()
    };
    let mut o = Overlays::default();
    o.jacobian.on = true;
    o.jacobian.fold_colour = [1.0, 1.0, 0.0];
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Neurological);
    let c = Composite {
        interpolate: false,
        ..Default::default()
    };
    let p = bench.draw(&view, &present, &c, &o, Slot::Fixed, Slot::Moving);
    let (mut folds, mut others) = (0, 0);
    for x in 0..48 {
        // Neurological: x grows to the right, 2 px per voxel.
        let w = view.world_at([(x as f64 + 0.5) / 48.0, 0.5], [48.0, 32.0]);
        let vx = grid.world_to_voxel(w).expect("invertible")[0].round() as usize;
        let px = bench.px(&p, x, 16);
        if det[vx.min(23) + 24 * 8] <= 0.0 {
            assert_eq!(px, [255, 255, 0, 255], "column {x} (voxel {vx}) folds");
            folds += 1;
        } else {
            assert_ne!(px, [255, 255, 0, 255], "column {x} (voxel {vx})");
            others += 1;
        }
    }
    assert!(
        folds >= 4 && others > 20,
        "{folds} fold columns, {others} others"
    );
}

#[test]
fn grid_lines_of_a_zero_field_are_straight_and_evenly_spaced() {
    let mut bench = Bench::new(64, 48);
    let grid = test_grid([64, 48, 4]);
    bench.set_field(&Volume::filled(grid.clone(), 3, 0.0));
    let present = Present {
        field: Some(&grid),
        ..Default::default()
    };
    let mut o = Overlays::default();
    o.grid.on = true;
    o.grid.spacing_mm = 8.0;
    o.grid.opacity = 1.0;
    o.grid.colour = [1.0, 1.0, 1.0];
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Radiological);
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    let bright = |x: u32, y: u32| bench.px(&p, x, y)[0] > 128;
    let rows_with_line: Vec<u32> = (0..48).filter(|&y| (0..64).all(|x| bright(x, y))).collect();
    let cols_with_line: Vec<u32> = (0..64).filter(|&x| (0..48).all(|y| bright(x, y))).collect();
    for lines in [&rows_with_line, &cols_with_line] {
        assert!(lines.len() >= 5, "{lines:?}");
        for w in lines.windows(2) {
            assert_eq!(w[1] - w[0], 8, "evenly spaced: {lines:?}");
        }
    }
    // Each line lies where a world coordinate is a multiple of the spacing.
    for &c in &cols_with_line {
        let x = view.world_at([(f64::from(c) + 0.5) / 64.0, 0.5], [64.0, 48.0])[0];
        assert!(
            (x - 8.0 * (x / 8.0).round()).abs() <= 0.5,
            "column {c} at x = {x} mm"
        );
    }
    for &r in &rows_with_line {
        let y = view.world_at([0.5, (f64::from(r) + 0.5) / 48.0], [64.0, 48.0])[1];
        assert!(
            (y - 8.0 * (y / 8.0).round()).abs() <= 0.5,
            "row {r} at y = {y} mm"
        );
    }
    // Off the lines, nothing is drawn: the lines are straight (one pixel wide).
    for y in 0..48 {
        for x in 0..64 {
            if !rows_with_line.contains(&y) && !cols_with_line.contains(&x) {
                assert!(!bright(x, y), "({x}, {y}) lies between lines");
            }
        }
    }
    // A uniform shift of the field by 2 mm along x moves the vertical lines by 2 px.
    bench.set_field(&shift_x(&grid, 2.0));
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    let moved: Vec<u32> = (0..64)
        .filter(|&x| (0..48).all(|y| bench.px(&p, x, y)[0] > 128))
        .collect();
    // Radiological: +x (patient right) is screen left, so φ = x + 2 puts lines 2 px right.
    assert!(moved.len() >= 7, "{moved:?}");
    for c in &moved {
        assert_eq!(
            c % 8,
            (cols_with_line[0] + 2) % 8,
            "{moved:?} vs {cols_with_line:?}"
        );
    }
}

#[test]
fn motion_vectors_point_along_the_displacement_on_screen() {
    let mut bench = Bench::new(64, 64);
    let grid = test_grid([64, 64, 4]);
    // 3 mm towards patient right (+x).
    bench.set_field(&shift_x(&grid, 3.0));
    let present = Present {
        field: Some(&grid),
        ..Default::default()
    };
    let mut o = Overlays::default();
    o.vectors.on = true;
    o.vectors.spacing_px = 16.0;
    o.vectors.scale = 2.0; // 6 px arrows
    o.vectors.opacity = 1.0;
    o.vectors.colour = [0.0, 1.0, 0.0];
    for (convention, sign) in [
        (Convention::Radiological, -1i32),
        (Convention::Neurological, 1),
    ] {
        let view = SliceView::centred(Plane::Axial, &grid, convention);
        let p = bench.draw(
            &view,
            &present,
            &Composite::default(),
            &o,
            Slot::Fixed,
            Slot::Moving,
        );
        let green = |x: i32, y: i32| bench.px(&p, x as u32, y as u32)[1] > 128;
        for cy in [8, 24, 40, 56] {
            for cx in [8, 24, 40, 56] {
                assert!(
                    green(cx + sign * 4, cy),
                    "{convention:?}: shaft of the arrow at ({cx}, {cy})"
                );
                assert!(
                    !green(cx - sign * 4, cy),
                    "{convention:?}: nothing behind ({cx}, {cy})"
                );
                assert!(
                    !green(cx, cy - 5),
                    "{convention:?}: nothing above ({cx}, {cy})"
                );
            }
        }
    }
}

#[test]
fn label_outlines_trace_the_boundary_and_follow_the_field_for_moving_labels() {
    let mut bench = Bench::new(64, 64);
    let grid = test_grid([64, 64, 4]);
    let mut labels = Volume::filled(grid.clone(), 1, 0.0);
    for i in 0..labels.data.len() {
        let (x, y) = (i % 64, (i / 64) % 64);
        if (20..40).contains(&x) && (20..40).contains(&y) {
            labels.data[i] = 3.0;
        }
    }
    bench.set_map(Map::Labels, &labels);
    bench.set_field(&Volume::filled(grid.clone(), 3, 0.0));
    let mut o = Overlays::default();
    o.labels.on = true;
    let view = SliceView::centred(Plane::Axial, &grid, Convention::Neurological);
    let present = Present {
        field: Some(&grid),
        labels: Some((&grid, false)),
        ..Default::default()
    };
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    // Neurological axial: screen x = voxel x; screen y = 63 − voxel y.
    let lit = |p: &[u8], x: u32, y: u32| p[((y * 64 + x) * 4) as usize..][..3] != [0, 0, 0];
    let outline: Vec<u32> = (0..64).filter(|&x| lit(&p, x, 32)).collect();
    assert_eq!(
        outline,
        vec![20, 39],
        "the two sides of the square, inside it"
    );
    assert!(!lit(&p, 30, 32), "the interior is not filled");
    // The same labels as the moving image's, seen through a 5-voxel shift:
    // fixed x shows the label at x + 5, so the square appears 5 px to the left.
    bench.set_field(&shift_x(&grid, 5.0));
    let present = Present {
        labels: Some((&grid, true)),
        ..present
    };
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    let outline: Vec<u32> = (0..64).filter(|&x| lit(&p, x, 32)).collect();
    assert_eq!(outline, vec![15, 34]);
}

#[test]
fn ic_weights_are_clear_at_full_weight_and_coloured_where_low() {
    let mut bench = Bench::new(64, 48);
    let (grid, view) = two_constants(&mut bench);
    let mut ic = Volume::filled(grid.clone(), 1, 1.0);
    for i in 0..ic.data.len() {
        if i % 64 < 32 {
            ic.data[i] = 0.5;
        }
    }
    bench.set_map(Map::IcWeights, &ic);
    let mut o = Overlays::default();
    o.ic.on = true;
    o.ic.opacity = 1.0;
    let present = Present {
        a: Some((&grid, grey((0.0, 1.0)))),
        ic: Some((&grid, (0.5, 1.0))),
        ..Default::default()
    };
    let p = bench.draw(
        &view,
        &present,
        &Composite::default(),
        &o,
        Slot::Fixed,
        Slot::Moving,
    );
    // Radiological: voxel x < 32 (weight 0.5, the window's bottom) is on the right.
    let low = bench.px(&p, 50, 20);
    let full = bench.px(&p, 10, 20);
    assert!(
        close(low, to_u8(lut_sample(ColorMap::Hot, 1.0)), 1.5),
        "{low:?}"
    );
    assert!(
        close(full, [51.0; 3], 1.0),
        "the image shows through: {full:?}"
    );
}

#[test]
fn gpu_warp_equals_the_cpu_warp_through_world_coordinates() {
    let gpu = device();
    let worst = warp_difference(&gpu, &FieldCompute::new(&gpu.device));
    assert!(worst < 2e-4, "largest difference {worst}");
}

/// The GPU warp vs the CPU warp of the same field, largest difference.
fn warp_difference(gpu: &warpscope::gpu::Headless, compute: &FieldCompute) -> f32 {
    // Fixed 1.5 mm RAS grid; moving on an oblique LPS grid covering it.
    let fixed = Grid::new([20, 18, 12], affine::diagonal([1.5, 1.5, 1.5]));
    let mut mov_affine = lps_oblique();
    mov_affine[0][3] = 35.0;
    mov_affine[1][3] = 28.0;
    mov_affine[2][3] = -4.0;
    let moving_grid = Grid::new([26, 24, 14], mov_affine);
    let moving =
        Volume::from_data(moving_grid.clone(), 1, noise(moving_grid.voxels(), 9)).expect("sizes");
    // A smooth field of up to 2 voxels.
    let n = fixed.voxels();
    let mut disp = Volume::filled(fixed.clone(), 3, 0.0);
    for i in 0..n {
        let p = warpscope::volume::voxel_of(i, fixed.dims);
        disp.data[i] = (2.0 * (p[1] / 5.0).sin()) as f32;
        disp.data[n + i] = (1.5 * (p[2] / 4.0).cos()) as f32;
        disp.data[2 * n + i] = (1.0 * (p[0] / 6.0).sin()) as f32;
    }
    let (d, q) = (&gpu.device, &gpu.queue);
    let field_tex = GpuVolume::field(d, q, "field", fixed.dims, &disp.data).expect("field");
    let mov_tex =
        GpuVolume::scalar(d, q, "moving", moving_grid.dims, moving.channel(0)).expect("moving");
    let m = affine::mul(
        &affine::inverse(&moving_grid.affine).expect("invertible"),
        &fixed.affine,
    );
    let warped = compute.warp(d, q, &mov_tex, &field_tex, &m).expect("warp");
    let gpu_values = Readback::start(d, q, &warped)
        .expect("readback")
        .wait(d)
        .expect("values");
    let mapping = Mapping::from_field(&disp, FieldKind::DispVox, &fixed)
        .expect("mapping")
        .0;
    let cpu = mapping.warp(&moving, Interp::Linear).expect("cpu warp");
    let mut worst = 0f32;
    for i in 0..n {
        worst = worst.max((gpu_values[i] - cpu.data[i]).abs());
    }
    assert!(
        cpu.data.iter().filter(|v| **v != 0.0).count() > n / 2,
        "mostly inside the moving image"
    );
    worst
}

/// det J on the GPU vs the metric on the CPU, largest difference.
fn det_j_difference(gpu: &warpscope::gpu::Headless, compute: &FieldCompute) -> f32 {
    let grid = Grid::new([17, 13, 9], lps_oblique());
    let n = grid.voxels();
    let mut disp = Volume::filled(grid.clone(), 3, 0.0);
    for i in 0..n {
        let p = warpscope::volume::voxel_of(i, grid.dims);
        disp.data[i] = (1.2 * (p[0] / 3.0 + p[1] / 4.0).sin()) as f32;
        disp.data[n + i] = (0.8 * (p[1] / 2.5).cos() * (p[2] / 3.0).cos()) as f32;
        disp.data[2 * n + i] = (0.9 * (p[2] / 3.5 + p[0] / 5.0).sin()) as f32;
    }
    let (d, q) = (&gpu.device, &gpu.queue);
    let f = GpuVolume::field(d, q, "field", grid.dims, &disp.data).expect("field");
    let jac = compute.jacobian(d, q, &f).expect("det J");
    let values = Readback::start(d, q, &jac)
        .expect("readback")
        .wait(d)
        .expect("values");
    let mapping = Mapping::from_field(&disp, FieldKind::DispVox, &grid)
        .expect("mapping")
        .0;
    let cpu = jacobian::determinant(&mapping);
    let mut worst = 0f32;
    for i in 0..n {
        worst = worst.max((values[i] - cpu.data[i]).abs());
    }
    assert!(
        values.iter().any(|&v| v < 0.8) && values.iter().any(|&v| v > 1.2),
        "a non-trivial field"
    );
    worst
}

#[test]
fn gpu_det_j_equals_the_metric_on_an_anisotropic_oblique_grid() {
    let gpu = device();
    let worst = det_j_difference(&gpu, &FieldCompute::new(&gpu.device));
    assert!(worst < 2e-4, "largest difference {worst}");
}

#[test]
fn volumes_cut_into_several_slabs_give_the_same_products() {
    // Rows are padded to 256 bytes; a slab of at most two slices forces
    // several dispatches and buffer → texture copies per volume.
    let gpu = device();
    let det = det_j_difference(
        &gpu,
        &FieldCompute::new(&gpu.device).with_slab_limit(2 * 13 * 256),
    );
    assert!(det < 2e-4, "det J: largest difference {det}");
    let warp = warp_difference(
        &gpu,
        &FieldCompute::new(&gpu.device).with_slab_limit(3 * 18 * 256),
    );
    assert!(warp < 2e-4, "warp: largest difference {warp}");
}

#[test]
fn the_opengl_fallback_computes_det_j_and_the_warp_on_every_slice() {
    // wgpu falls back to OpenGL where no Vulkan driver exists; there 3-D
    // storage textures are written one slice only, hence buffers + copies.
    let gpu = warpscope::gpu::headless_on(wgpu::Backends::GL).unwrap_or_else(|e| {
        panic!("{e}\n(this test needs Mesa's OpenGL: CI installs libegl-mesa0 and libgl1-mesa-dri)")
    });
    assert_eq!(gpu.info.backend, wgpu::Backend::Gl);
    let det = det_j_difference(&gpu, &FieldCompute::new(&gpu.device));
    assert!(det < 2e-4, "det J: largest difference {det}");
    let warp = warp_difference(&gpu, &FieldCompute::new(&gpu.device));
    assert!(warp < 2e-4, "warp: largest difference {warp}");
}

/// An engine field on a pyramid level, placed on the display grid by the
/// GPU (`field_from_level`), equals the CPU's result for the same field:
/// resized to the fixed grid, the affine applied, brought to the display
/// grid — from host samples and from a buffer at an offset alike.
#[test]
fn engine_fields_land_on_the_display_grid_as_the_cpu_places_them() {
    use warpscope::register::fused::resize_field;
    use warpscope::render::{LevelPlacement, LevelSource};
    let gpu = device();
    let compute = FieldCompute::new(&gpu.device);
    let (d, q) = (&gpu.device, &gpu.queue);
    let fixed = Grid::new([23, 19, 17], lps_oblique());
    let levels = warpscope::volume::pyramid::gaussian_pyramid(
        &Volume::filled(fixed.clone(), 1, 0.0),
        2,
        1.0,
    );
    let level = levels[1].grid.clone();
    let nl = level.voxels();
    let mut u = vec![0f32; 3 * nl];
    for i in 0..nl {
        let p = warpscope::volume::voxel_of(i, level.dims);
        u[i] = (1.2 * (p[1] / 3.0).sin()) as f32;
        u[nl + i] = (0.7 * (p[2] / 2.0 + p[0] / 4.0).cos()) as f32;
        u[2 * nl + i] = (0.9 * (p[0] / 3.5).sin()) as f32;
    }
    // A small rotation and shift in fixed voxels.
    let (c, s) = (0.05f64.cos(), 0.05f64.sin());
    let a: Mat4 = [
        [c, -s, 0.0, 0.8],
        [s, c, 0.0, -0.5],
        [0.0, 0.0, 1.02, 0.3],
        [0.0, 0.0, 0.0, 1.0],
    ];
    // CPU: u on the fixed grid, then A·(p + u(p)) − p.
    let vox = |from: &Grid, to: &Grid| {
        affine::mul(&affine::inverse(&to.affine).expect("inv"), &from.affine)
    };
    let rows = |m: Mat4| [m[0], m[1], m[2]];
    let uf = resize_field(
        &u,
        level.dims,
        fixed.dims,
        &rows(vox(&fixed, &level)),
        &rows(vox(&level, &fixed)),
    );
    let n = fixed.voxels();
    let mut total = Volume::filled(fixed.clone(), 3, 0.0);
    for i in 0..n {
        let p = warpscope::volume::voxel_of(i, fixed.dims);
        let m = affine::apply(
            &a,
            [
                p[0] + f64::from(uf[i]),
                p[1] + f64::from(uf[n + i]),
                p[2] + f64::from(uf[2 * n + i]),
            ],
        );
        for k in 0..3 {
            total.data[k * n + i] = (m[k] - p[k]) as f32;
        }
    }
    let read = |vol: &GpuVolume| -> Vec<f32> {
        Readback::start(d, q, vol)
            .expect("readback")
            .wait(d)
            .expect("values")
    };
    let worst_against = |gpu_rgba: &[f32], want: &Volume| -> f32 {
        let n = want.grid.voxels();
        (0..n)
            .flat_map(|i| (0..3).map(move |k| (i, k)))
            .map(|(i, k)| (gpu_rgba[4 * i + k] - want.data[k * n + i]).abs())
            .fold(0.0, f32::max)
    };
    // Display = the fixed grid: exact up to f32 rounding.
    let place = LevelPlacement::new(&level, &fixed, &fixed, &a).expect("placement");
    let host = compute
        .field_from_level(d, q, LevelSource::Host(&u), &place)
        .expect("from host");
    let worst = worst_against(&read(&host), &total);
    assert!(
        worst < 2e-3,
        "host source: largest difference {worst} voxels"
    );
    // The same from a storage buffer holding the field at a 256-byte offset.
    let mut bytes = vec![0u8; 256];
    bytes.extend_from_slice(bytemuck::cast_slice(&u));
    let buffer = wgpu::util::DeviceExt::create_buffer_init(
        d,
        &wgpu::util::BufferInitDescriptor {
            label: Some("engine tensor"),
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        },
    );
    let from_buffer = compute
        .field_from_level(
            d,
            q,
            LevelSource::Buffer {
                buffer: &buffer,
                offset: 256,
            },
            &place,
        )
        .expect("from buffer");
    assert_eq!(
        read(&from_buffer),
        read(&host),
        "both sources give the same field"
    );
    // And from one buffer per component (the engine's GPU kernels).
    let n = u.len() / 3;
    let parts: Vec<wgpu::Buffer> = (0..3)
        .map(|c| {
            wgpu::util::DeviceExt::create_buffer_init(
                d,
                &wgpu::util::BufferInitDescriptor {
                    label: Some("engine field component"),
                    contents: bytemuck::cast_slice(&u[c * n..(c + 1) * n]),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                },
            )
        })
        .collect();
    let from_parts = compute
        .field_from_level(
            d,
            q,
            LevelSource::Components([&parts[0], &parts[1], &parts[2]]),
            &place,
        )
        .expect("from components");
    assert_eq!(
        read(&from_parts),
        read(&host),
        "component buffers give the same field"
    );
    // Display = a halved grid (a volume reduced to fit the GPU): as the
    // final result is brought there (mapped coordinates resampled).
    let display = levels[1].grid.clone();
    let place = LevelPlacement::new(&level, &fixed, &display, &a).expect("placement");
    let small = compute
        .field_from_level(d, q, LevelSource::Host(&u), &place)
        .expect("on the display grid");
    let want = Mapping::from_field(&total, FieldKind::DispVox, &display)
        .expect("mapping")
        .0
        .displacement_vox()
        .expect("display displacement");
    // Compared where the display voxel lies inside the fixed grid (beyond
    // it the CPU resampling extrapolates by its border rule).
    let to_fixed = vox(&display, &fixed);
    let got = read(&small);
    let mut worst = 0f32;
    let mut compared = 0;
    for i in 0..display.voxels() {
        let p = affine::apply(&to_fixed, warpscope::volume::voxel_of(i, display.dims));
        if (0..3).all(|k| p[k] >= 1.0 && p[k] <= fixed.dims[k] as f64 - 2.0) {
            compared += 1;
            for k in 0..3 {
                worst = worst.max((got[4 * i + k] - want.data[k * display.voxels() + i]).abs());
            }
        }
    }
    assert!(
        compared > display.voxels() / 3,
        "{compared} voxels compared"
    );
    assert!(
        worst < 0.05,
        "display grid: largest difference {worst} voxels"
    );
    assert!(
        total.data.iter().any(|v| v.abs() > 1.0),
        "a non-trivial field"
    );
}
