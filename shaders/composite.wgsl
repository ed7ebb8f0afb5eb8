// One slice view: two images composed by a mode, then the field overlays.
//
// Every image lives on its own grid; the CPU passes, per image, the matrix
// from view coordinates (u, v in [0, 1], v down) to that image's voxel
// indices, so images on different grids line up in world (RAS) space.
// Volumes are R32Float / RGBA32Float 3-D textures read with textureLoad
// and interpolated here (no filterable-float feature needed).
//
// Displacements (the field texture) are in voxels of the fixed grid, the
// engine's convention: fixed voxel p corresponds to the moving point at
// fixed voxel p + u(p), i.e. world x ↦ φ(x) = x + L·u, L the linear part of
// the fixed grid's affine.

struct Layer {
    // view uv → voxel (images, IC map) or world → voxel (labels)
    to_vox: mat4x4<f32>,
    // nx, ny, nz, present (1) / absent (0)
    dims: vec4<f32>,
    // window low, window high, colour-map row, opacity (overlays)
    style: vec4<f32>,
};

struct Params {
    a: Layer,
    b: Layer,
    ic: Layer,
    labels: Layer,
    uv_to_world: mat4x4<f32>,
    // world → field voxel (the field and det J live on the fixed grid)
    world_to_field: mat4x4<f32>,
    // field voxel displacement → world mm (linear part of the fixed affine)
    field_to_world: mat4x4<f32>,
    // world mm vector → view pixels (x right, y down)
    world_to_px: mat4x4<f32>,
    // field nx, ny, nz, present (det J shares the field's grid)
    field_dims: vec4<f32>,
    // view width px, height px, horizontal world axis, vertical world axis
    view: vec4<f32>,
    // mode, parameter (tile mm / B fraction / difference gain / divider u),
    // det J fade (1), trilinear (1)
    mode: vec4<f32>,
    // grid: spacing mm, opacity, line width px, on
    grid: vec4<f32>,
    grid_colour: vec4<f32>,
    // vectors: lattice spacing px, length scale, opacity, on
    vectors: vec4<f32>,
    vector_colour: vec4<f32>,
    // det J: style (0 off, 1 log, 2 signed), opacity, range, det J present
    jacobian: vec4<f32>,
    fold_colour: vec4<f32>,
    // labels: on, opacity, through the field (1), unused
    label_opts: vec4<f32>,
    background: vec4<f32>,
};

// Pipeline-overridable switches: a pipeline is built per combination in
// use, so what is off is removed when the shader is compiled. (Software
// rasterisers such as lavapipe run both sides of every branch under a mask;
// on GPUs the uniform flags below would suffice.)
override USE_B: bool = true;
override GRID: bool = true;
override VECTORS: bool = true;
override JACOBIAN: bool = true;
override IC: bool = true;
override LABELS: bool = true;

const MODE_SINGLE: i32 = 0;
const MODE_CHECKER: i32 = 1;
const MODE_GREEN_MAGENTA: i32 = 2;
const MODE_DIFFERENCE: i32 = 3;
const MODE_BLEND: i32 = 4;
const MODE_SWIPE: i32 = 5;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var tex_a: texture_3d<f32>;
@group(0) @binding(2) var tex_b: texture_3d<f32>;
@group(0) @binding(3) var tex_field: texture_3d<f32>;
@group(0) @binding(4) var tex_jac: texture_3d<f32>;
@group(0) @binding(5) var tex_ic: texture_3d<f32>;
@group(0) @binding(6) var tex_labels: texture_3d<f32>;
@group(0) @binding(7) var lut_tex: texture_2d<f32>;

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// A single triangle that covers the viewport; uv runs 0..1 across it.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    let x = f32((i << 1u) & 2u);
    let y = f32(i & 2u);
    var out: VsOut;
    out.position = vec4<f32>(x * 2.0 - 1.0, 1.0 - y * 2.0, 0.0, 1.0);
    out.uv = vec2<f32>(x, y);
    return out;
}

// ---- sampling ----

fn inside(p: vec3<f32>, dims: vec3<f32>) -> bool {
    return all(p >= vec3<f32>(-0.5)) && all(p <= dims - vec3<f32>(0.5));
}

fn load(t: texture_3d<f32>, p: vec3<i32>, dims: vec3<f32>) -> vec4<f32> {
    let hi = vec3<i32>(dims) - vec3<i32>(1);
    return textureLoad(t, clamp(p, vec3<i32>(0), hi), 0);
}

fn nearest(t: texture_3d<f32>, p: vec3<f32>, dims: vec3<f32>) -> vec4<f32> {
    return load(t, vec3<i32>(floor(p + vec3<f32>(0.5))), dims);
}

// Trilinear (edge samples clamped), or nearest when interpolation is off.
fn sample(t: texture_3d<f32>, p: vec3<f32>, dims: vec3<f32>) -> vec4<f32> {
    if params.mode.w < 0.5 {
        return nearest(t, p, dims);
    }
    let f = floor(p);
    let w = p - f;
    let i = vec3<i32>(f);
    let c00 = mix(load(t, i, dims), load(t, i + vec3<i32>(1, 0, 0), dims), w.x);
    let c10 = mix(load(t, i + vec3<i32>(0, 1, 0), dims), load(t, i + vec3<i32>(1, 1, 0), dims), w.x);
    let c01 = mix(load(t, i + vec3<i32>(0, 0, 1), dims), load(t, i + vec3<i32>(1, 0, 1), dims), w.x);
    let c11 = mix(load(t, i + vec3<i32>(0, 1, 1), dims), load(t, i + vec3<i32>(1, 1, 1), dims), w.x);
    return mix(mix(c00, c10, w.y), mix(c01, c11, w.y), w.z);
}

// Colour map row `row` at t in [0, 1], entries interpolated linearly.
fn lut(row: f32, t: f32) -> vec3<f32> {
    let x = clamp(t, 0.0, 1.0) * 255.0;
    let i0 = i32(floor(x));
    let i1 = min(i0 + 1, 255);
    let r = i32(row);
    let c0 = textureLoad(lut_tex, vec2<i32>(i0, r), 0).rgb;
    let c1 = textureLoad(lut_tex, vec2<i32>(i1, r), 0).rgb;
    return mix(c0, c1, x - f32(i0));
}

struct Sample {
    // windowed value in [0, 1]
    t: f32,
    // 1 inside the image, 0 outside or absent
    ok: f32,
};

fn image(t: texture_3d<f32>, layer: Layer, uv: vec2<f32>) -> Sample {
    var s: Sample;
    s.t = 0.0;
    s.ok = 0.0;
    let p = (layer.to_vox * vec4<f32>(uv, 0.0, 1.0)).xyz;
    if layer.dims.w > 0.5 && inside(p, layer.dims.xyz) {
        let v = sample(t, p, layer.dims.xyz).r;
        let span = max(layer.style.y - layer.style.x, 1e-20);
        s.t = clamp((v - layer.style.x) / span, 0.0, 1.0);
        s.ok = 1.0;
    }
    return s;
}

fn colour(s: Sample, row: f32) -> vec3<f32> {
    return select(params.background.rgb, lut(row, s.t), s.ok > 0.5);
}

struct Field {
    // displacement in world mm
    d: vec3<f32>,
    // field voxel coordinates of the point
    p: vec3<f32>,
    ok: f32,
};

// The displacement at a world point: interpolated as the images are, or at
// the nearest voxel (arrow origins: one load per arrow instead of eight).
fn field_at(world: vec3<f32>, at_nearest_voxel: bool) -> Field {
    var f: Field;
    f.p = (params.world_to_field * vec4<f32>(world, 1.0)).xyz;
    f.d = vec3<f32>(0.0);
    f.ok = 0.0;
    if params.field_dims.w > 0.5 && inside(f.p, params.field_dims.xyz) {
        var u: vec3<f32>;
        if at_nearest_voxel {
            u = nearest(tex_field, f.p, params.field_dims.xyz).xyz;
        } else {
            u = sample(tex_field, f.p, params.field_dims.xyz).xyz;
        }
        f.d = (params.field_to_world * vec4<f32>(u, 0.0)).xyz;
        f.ok = 1.0;
    }
    return f;
}

fn world_at(uv: vec2<f32>) -> vec3<f32> {
    return (params.uv_to_world * vec4<f32>(uv, 0.0, 1.0)).xyz;
}

fn axis(v: vec3<f32>, a: f32) -> f32 {
    if a < 0.5 {
        return v.x;
    }
    if a < 1.5 {
        return v.y;
    }
    return v.z;
}

// ---- overlays ----

// Distance in pixels from p to the segment a–b.
fn segment_distance(p: vec2<f32>, a: vec2<f32>, b: vec2<f32>) -> f32 {
    let ab = b - a;
    let l2 = dot(ab, ab);
    var h = 0.0;
    if l2 > 1e-12 {
        h = clamp(dot(p - a, ab) / l2, 0.0, 1.0);
    }
    return length(p - a - h * ab);
}

// Coverage (0..1) of motion-vector arrows drawn from the centres of a lattice
// of cells (the displacement of the voxel nearest each centre); each pixel
// looks at its own and the 8 neighbouring cells, so arrows up to one cell
// long are drawn whole.
fn vectors_coverage(uv: vec2<f32>) -> f32 {
    let size = params.view.xy;
    let px = uv * size;
    let cell_px = max(params.vectors.x, 4.0);
    let cell = floor(px / cell_px);
    var cover = 0.0;
    for (var dy = -1; dy <= 1; dy++) {
        for (var dx = -1; dx <= 1; dx++) {
            let c = (cell + vec2<f32>(f32(dx), f32(dy)) + vec2<f32>(0.5)) * cell_px;
            let f = field_at(world_at(c / size), true);
            if f.ok < 0.5 {
                continue;
            }
            let d = (params.world_to_px * vec4<f32>(f.d, 0.0)).xy * params.vectors.y;
            let len = length(d);
            if len < 0.5 {
                continue;
            }
            let tip = c + d;
            let back = -d / len * min(0.35 * len, 6.0);
            let side = vec2<f32>(-back.y, back.x) * 0.5;
            var dist = segment_distance(px, c, tip);
            dist = min(dist, segment_distance(px, tip, tip + back + side));
            dist = min(dist, segment_distance(px, tip, tip + back - side));
            // 1.5 px wide, antialiased.
            cover = max(cover, clamp(1.25 - dist, 0.0, 1.0));
        }
    }
    return cover;
}

fn label_colour(l: f32) -> vec3<f32> {
    // A categorical palette: golden-ratio hue steps, full value.
    let h = fract(l * 0.6180339887) * 6.0;
    let x = 1.0 - abs(h % 2.0 - 1.0);
    var c = vec3<f32>(1.0, x, 0.0);
    if h >= 1.0 && h < 2.0 {
        c = vec3<f32>(x, 1.0, 0.0);
    } else if h >= 2.0 && h < 3.0 {
        c = vec3<f32>(0.0, 1.0, x);
    } else if h >= 3.0 && h < 4.0 {
        c = vec3<f32>(0.0, x, 1.0);
    } else if h >= 4.0 && h < 5.0 {
        c = vec3<f32>(x, 0.0, 1.0);
    } else if h >= 5.0 {
        c = vec3<f32>(1.0, 0.0, x);
    }
    return mix(vec3<f32>(1.0), c, 0.8);
}

// Label under a view point (nearest; through the field for moving-space labels).
fn label_at(uv: vec2<f32>) -> f32 {
    var w = world_at(uv);
    if params.label_opts.z > 0.5 {
        let f = field_at(w, false);
        if f.ok < 0.5 {
            return 0.0;
        }
        w = w + f.d;
    }
    let p = (params.labels.to_vox * vec4<f32>(w, 1.0)).xyz;
    if !inside(p, params.labels.dims.xyz) {
        return 0.0;
    }
    return nearest(tex_labels, p, params.labels.dims.xyz).r;
}

fn over(base: vec3<f32>, c: vec3<f32>, alpha: f32) -> vec3<f32> {
    return mix(base, c, clamp(alpha, 0.0, 1.0));
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let uv = in.uv;
    let world = world_at(uv);
    let mode = i32(params.mode.x + 0.5);

    // ---- the two images, composed ----
    let sa = image(tex_a, params.a, uv);
    var sb: Sample;
    if USE_B {
        sb = image(tex_b, params.b, uv);
    }
    let ca = colour(sa, params.a.style.z);
    let cb = colour(sb, params.b.style.z);
    var rgb = ca;
    if mode == MODE_CHECKER {
        let tile = max(params.mode.y, 1e-3);
        let i = floor(axis(world, params.view.z) / tile) + floor(axis(world, params.view.w) / tile);
        if i - 2.0 * floor(i / 2.0) > 0.5 {
            rgb = cb;
        }
    } else if mode == MODE_GREEN_MAGENTA {
        // Fixed (A) green, B magenta: grey where they agree.
        let g = sa.t * sa.ok;
        let m = sb.t * sb.ok;
        rgb = vec3<f32>(m, g, m);
        if sa.ok + sb.ok < 0.5 {
            rgb = params.background.rgb;
        }
    } else if mode == MODE_DIFFERENCE {
        rgb = lut(params.a.style.z, params.mode.y * abs(sa.t - sb.t));
        if sa.ok * sb.ok < 0.5 {
            rgb = params.background.rgb;
        }
    } else if mode == MODE_BLEND {
        rgb = mix(ca, cb, clamp(params.mode.y, 0.0, 1.0));
    } else if mode == MODE_SWIPE {
        if uv.x >= params.mode.y {
            rgb = cb;
        }
    }

    // ---- det J ----
    let style = i32(params.jacobian.x + 0.5);
    let fp = (params.world_to_field * vec4<f32>(world, 1.0)).xyz;
    if JACOBIAN && style > 0 && params.jacobian.w > 0.5 && params.field_dims.w > 0.5
        && inside(fp, params.field_dims.xyz) {
        let det = sample(tex_jac, fp, params.field_dims.xyz).r;
        let range = params.jacobian.z;
        if style == 1 {
            if det <= 0.0 {
                rgb = over(rgb, params.fold_colour.rgb, max(params.jacobian.y, params.fold_colour.a));
            } else {
                let t = 0.5 + 0.5 * clamp(log(det) / log(max(range, 1.000001)), -1.0, 1.0);
                // Fade: alpha grows with the distance from det J = 1 on the log scale.
                let fade = select(1.0, 2.0 * abs(t - 0.5), params.mode.z > 0.5);
                rgb = over(rgb, lut(4.0, t), params.jacobian.y * fade);
            }
        } else {
            let t = 0.5 + 0.5 * clamp(det / max(range, 1e-6), -1.0, 1.0);
            rgb = over(rgb, lut(5.0, t), params.jacobian.y);
        }
    }

    // ---- inverse-consistency weights, windowed to t: the down-weighting
    // 1 − t as heat, clear at the window's top (full weight), opaque at its bottom.
    if IC {
        let ic = image(tex_ic, params.ic, uv);
        if ic.ok > 0.5 {
            let down = 1.0 - ic.t;
            rgb = over(rgb, lut(params.ic.style.z, down), params.ic.style.w * down);
        }
    }

    // ---- label outlines ----
    if LABELS && params.label_opts.x > 0.5 && params.labels.dims.w > 0.5 {
        let du = vec2<f32>(1.0 / params.view.x, 0.0);
        let dv = vec2<f32>(0.0, 1.0 / params.view.y);
        let l = label_at(uv);
        if l > 0.5 {
            let edge = label_at(uv + du) != l || label_at(uv - du) != l
                || label_at(uv + dv) != l || label_at(uv - dv) != l;
            if edge {
                rgb = over(rgb, label_colour(l), params.label_opts.y);
            }
        }
    }

    // ---- deformation grid: the curves where φ's in-plane coordinates are
    // multiples of the spacing, i.e. a regular grid of the moving space
    // pulled back into the fixed space (what warping a grid image shows).
    // The branch is on a uniform, so the derivatives stay in uniform control flow.
    if GRID && params.grid.w > 0.5 && params.field_dims.w > 0.5 {
        let f = field_at(world, false);
        let phi = world + f.d;
        let spacing = max(params.grid.x, 1e-3);
        let gh = axis(phi, params.view.z) / spacing;
        let gv = axis(phi, params.view.w) / spacing;
        let wh = max(length(vec2<f32>(dpdx(gh), dpdy(gh))), 1e-6);
        let wv = max(length(vec2<f32>(dpdx(gv), dpdy(gv))), 1e-6);
        if f.ok > 0.5 {
            let dist_h = abs(fract(gh + 0.5) - 0.5) / wh;
            let dist_v = abs(fract(gv + 0.5) - 0.5) / wv;
            let half = 0.5 * params.grid.z;
            let cover = clamp(half + 0.5 - min(dist_h, dist_v), 0.0, 1.0);
            rgb = over(rgb, params.grid_colour.rgb, cover * params.grid.y);
        }
    }

    // ---- motion vectors ----
    if VECTORS && params.vectors.w > 0.5 && params.field_dims.w > 0.5 {
        rgb = over(rgb, params.vector_colour.rgb, vectors_coverage(uv) * params.vectors.z);
    }

    return vec4<f32>(rgb, 1.0);
}
