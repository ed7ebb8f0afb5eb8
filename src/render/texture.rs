//! Volumes on the GPU: 3-D textures (R32Float for scalars, RGBA32Float for
//! displacement fields), created inside wgpu error scopes so that a volume
//! too large for the device or its memory becomes an error message, never a
//! panic; and the display-size fitting that keeps volumes within the
//! adapter's limits.

use crate::volume::resample::{Border, Interp, resample};
use crate::volume::{Volume, pyramid};

/// A 3-D texture and its view (cloning shares the texture).
#[derive(Clone)]
pub struct GpuVolume {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    pub dims: [u32; 3],
    pub format: wgpu::TextureFormat,
}

/// Bytes per voxel of a texture format used here.
fn texel_bytes(format: wgpu::TextureFormat) -> u64 {
    match format {
        wgpu::TextureFormat::Rgba32Float => 16,
        _ => 4,
    }
}

/// Bytes per row of a texture ⇄ buffer copy: `row_bytes` rounded up to
/// wgpu's copy alignment (256).
pub fn padded_row_bytes(row_bytes: u32) -> u32 {
    row_bytes.div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT
}

/// Whether a volume of `dims` in `format` fits the device's limits; the
/// reason when it does not.
pub fn check_limits(
    limits: &wgpu::Limits,
    dims: [usize; 3],
    format: wgpu::TextureFormat,
) -> Result<(), String> {
    let max = limits.max_texture_dimension_3d as usize;
    if dims.contains(&0) {
        return Err(format!("empty volume {dims:?}"));
    }
    if dims.iter().any(|&d| d > max) {
        return Err(format!(
            "{}×{}×{} exceeds this GPU's 3-D texture limit of {max} voxels per axis",
            dims[0], dims[1], dims[2]
        ));
    }
    let bytes = dims.iter().map(|&d| d as u64).product::<u64>() * texel_bytes(format);
    if bytes > limits.max_buffer_size {
        return Err(format!(
            "{} MiB exceeds this GPU's largest buffer ({} MiB)",
            bytes >> 20,
            limits.max_buffer_size >> 20
        ));
    }
    Ok(())
}

/// Halve `vol` until it fits `limits` as a texture of `format`: a Gaussian
/// pyramid step for images, nearest-neighbour for label maps. Returns the
/// volume to display and a notice when it was reduced (the full-resolution
/// volume stays with the caller).
pub fn fit_for_display(
    vol: &Volume,
    limits: &wgpu::Limits,
    format: wgpu::TextureFormat,
    labels: bool,
) -> Result<(Option<Volume>, Option<String>), String> {
    let halve = |v: &Volume| -> Result<Volume, String> {
        if labels {
            resample(
                v,
                &pyramid::half_grid(&v.grid),
                Interp::Nearest,
                Border::Clamp,
            )
            .map_err(|e| e.to_string())
        } else {
            Ok(pyramid::downsample2(v, pyramid::DEFAULT_SIGMA_VOX))
        }
    };
    if vol.grid.dims.contains(&0) {
        return Err("the volume is empty (a dimension is 0)".into());
    }
    let Err(first) = check_limits(limits, vol.grid.dims, format) else {
        return Ok((None, None));
    };
    let mut v = halve(vol)?;
    let mut factor = 2;
    while let Err(e) = check_limits(limits, v.grid.dims, format) {
        if factor >= 64 {
            return Err(format!("cannot show this volume: {e}"));
        }
        v = halve(&v)?;
        factor *= 2;
    }
    let d = v.grid.dims;
    let notice = format!(
        "shown at 1/{factor} resolution ({}×{}×{}): {first}",
        d[0], d[1], d[2]
    );
    Ok((Some(v), Some(notice)))
}

/// Run `f` inside out-of-memory and validation error scopes; any error becomes `Err`.
pub fn scoped<T>(device: &wgpu::Device, what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    let v = pollster::block_on(validation.pop());
    let o = pollster::block_on(oom.pop());
    match (o, v) {
        (Some(e), _) => Err(format!("{what}: the GPU ran out of memory ({e})")),
        (None, Some(e)) => Err(format!("{what}: the GPU refused it ({e})")),
        (None, None) => Ok(value),
    }
}

/// Block until the GPU has finished the work submitted so far. Some
/// backends (OpenGL) return a timeout from an "indefinite" wait; keep
/// waiting, up to `limit`, before giving up with a message.
pub fn wait_idle(device: &wgpu::Device, limit: std::time::Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        match device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => return Ok(()),
            Err(wgpu::PollError::Timeout) if start.elapsed() < limit => continue,
            Err(e) => return Err(format!("waiting for the GPU: {e}")),
        }
    }
}

/// How long a wait for GPU work may take before it is reported as a failure.
pub const GPU_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

impl GpuVolume {
    fn descriptor(
        label: &str,
        dims: [u32; 3],
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    ) -> wgpu::TextureDescriptor<'_> {
        wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: dims[0],
                height: dims[1],
                depth_or_array_layers: dims[2],
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D3,
            format,
            usage,
            view_formats: &[],
        }
    }

    fn create(
        device: &wgpu::Device,
        queue: Option<(&wgpu::Queue, &[f32])>,
        label: &str,
        dims: [usize; 3],
        format: wgpu::TextureFormat,
        usage: wgpu::TextureUsages,
    ) -> Result<Self, String> {
        check_limits(&device.limits(), dims, format)?;
        let d = dims.map(|v| v as u32);
        let texture = scoped(device, label, || {
            let texture = device.create_texture(&Self::descriptor(label, d, format, usage));
            if let Some((queue, data)) = queue {
                queue.write_texture(
                    texture.as_image_copy(),
                    bytemuck::cast_slice(data),
                    wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(d[0] * texel_bytes(format) as u32),
                        rows_per_image: Some(d[1]),
                    },
                    wgpu::Extent3d {
                        width: d[0],
                        height: d[1],
                        depth_or_array_layers: d[2],
                    },
                );
            }
            texture
        })?;
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Ok(Self {
            texture,
            view,
            dims: d,
            format,
        })
    }

    /// Upload one scalar channel (z × y × x, x fastest) as R32Float.
    pub fn scalar(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        label: &str,
        dims: [usize; 3],
        data: &[f32],
    ) -> Result<Self, String> {
        if data.len() != dims.iter().product::<usize>() {
            return Err(format!(
                "{label}: {} samples for a {dims:?} grid",
                data.len()
            ));
        }
        Self::create(
            device,
            Some((queue, data)),
            label,
            dims,
            wgpu::TextureFormat::R32Float,
            wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC,
        )
    }

    /// Upload a displacement field: `planar` holds 3 channels (x, y, z
    /// components, each z × y × x), interleaved here into RGBA32Float.
    pub fn field(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        label: &str,
        dims: [usize; 3],
        planar: &[f32],
    ) -> Result<Self, String> {
        let n: usize = dims.iter().product();
        if planar.len() != 3 * n {
            return Err(format!(
                "{label}: {} samples for a 3-component {dims:?} field",
                planar.len()
            ));
        }
        // Fail on the limits before allocating 16 bytes per voxel here.
        check_limits(&device.limits(), dims, wgpu::TextureFormat::Rgba32Float)?;
        let mut rgba = vec![0f32; 4 * n];
        for (i, px) in rgba.chunks_exact_mut(4).enumerate() {
            px[0] = planar[i];
            px[1] = planar[n + i];
            px[2] = planar[2 * n + i];
        }
        Self::create(
            device,
            Some((queue, &rgba)),
            label,
            dims,
            wgpu::TextureFormat::Rgba32Float,
            wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        )
    }

    /// A volume filled by copies from compute buffers: R32Float (warped
    /// image, det J) or RGBA32Float (engine fields).
    pub fn output(
        device: &wgpu::Device,
        label: &str,
        dims: [usize; 3],
        format: wgpu::TextureFormat,
    ) -> Result<Self, String> {
        Self::create(
            device,
            None,
            label,
            dims,
            format,
            wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC,
        )
    }

    /// A 1×1×1 stand-in bound where a slot is empty (the uniform says it is absent).
    pub fn placeholder(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        format: wgpu::TextureFormat,
    ) -> Self {
        let texture = device.create_texture(&Self::descriptor(
            "placeholder",
            [1, 1, 1],
            format,
            wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        ));
        queue.write_texture(
            texture.as_image_copy(),
            &vec![0u8; texel_bytes(format) as usize],
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(texel_bytes(format) as u32),
                rows_per_image: Some(1),
            },
            wgpu::Extent3d {
                width: 1,
                height: 1,
                depth_or_array_layers: 1,
            },
        );
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Self {
            texture,
            view,
            dims: [1, 1, 1],
            format,
        }
    }

    pub fn voxels(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Grid, affine};

    #[test]
    fn limits_name_the_reason() {
        let limits = wgpu::Limits {
            max_texture_dimension_3d: 64,
            max_buffer_size: 1 << 19,
            ..wgpu::Limits::default()
        };
        let f = wgpu::TextureFormat::R32Float;
        assert!(check_limits(&limits, [64, 32, 8], f).is_ok());
        let e = check_limits(&limits, [65, 2, 2], f).unwrap_err();
        assert!(e.contains("3-D texture limit of 64"), "{e}");
        let e = check_limits(&limits, [64, 64, 64], f).unwrap_err();
        assert!(e.contains("largest buffer"), "{e}");
        assert!(check_limits(&limits, [0, 2, 2], f).is_err());
    }

    #[test]
    fn oversize_volumes_are_halved_until_they_fit() {
        let limits = wgpu::Limits {
            max_texture_dimension_3d: 40,
            ..wgpu::Limits::default()
        };
        let vol = Volume::filled(
            Grid::new([150, 10, 4], affine::diagonal([1.0, 1.0, 1.0])),
            1,
            2.0,
        );
        let (small, notice) =
            fit_for_display(&vol, &limits, wgpu::TextureFormat::R32Float, false).expect("fits");
        let small = small.expect("reduced");
        assert_eq!(small.grid.dims, [38, 3, 1]);
        assert!((small.data[0] - 2.0).abs() < 1e-5);
        let notice = notice.unwrap_or_default();
        assert!(notice.contains("1/4 resolution"), "{notice}");
        // Same world extent: spacing grew by 4.
        assert!((small.grid.spacing_mm()[0] - 4.0).abs() < 1e-9);
        let (none, n) = fit_for_display(&small, &limits, wgpu::TextureFormat::R32Float, false)
            .expect("already fits");
        // Label maps keep their values (nearest), never blends of two labels.
        let mut labels = vol.clone();
        for (i, v) in labels.data.iter_mut().enumerate() {
            *v = (i % 3) as f32;
        }
        let (l, _) =
            fit_for_display(&labels, &limits, wgpu::TextureFormat::R32Float, true).expect("fits");
        let l = l.expect("reduced");
        assert!(l.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        assert!(none.is_none() && n.is_none());
    }
}
