//! Screenshots of the window or of one view, saved as PNG with the mode,
//! windows, overlays and cursor in a text chunk (`warpscope`, JSON).

use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use eframe::egui;

use crate::render::Plane;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShotTarget {
    Window,
    View(Plane),
}

impl ShotTarget {
    fn name(self) -> &'static str {
        match self {
            ShotTarget::Window => "window",
            ShotTarget::View(p) => p.name(),
        }
    }
}

struct Shot {
    target: ShotTarget,
    /// Crop rectangle in points (views), with the points-to-pixels factor.
    rect: Option<(egui::Rect, f32)>,
    image: Arc<egui::ColorImage>,
}

pub struct Screenshots {
    tx: mpsc::Sender<Shot>,
    rx: mpsc::Receiver<Shot>,
    /// Where screenshots go; default `~/Pictures` (else the home or working folder).
    pub folder: PathBuf,
    pub pending: usize,
    /// Every target asked for, in order ("Window", "Axial", …).
    pub requested: Vec<String>,
}

impl Default for Screenshots {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let folder = match home {
            Some(h) if h.join("Pictures").is_dir() => h.join("Pictures"),
            Some(h) => h,
            None => PathBuf::from("."),
        };
        Self {
            tx,
            rx,
            folder,
            pending: 0,
            requested: Vec::new(),
        }
    }
}

impl Screenshots {
    /// Ask egui for the next frame's pixels; `rect` crops to a view.
    pub fn request(&mut self, ctx: &egui::Context, target: ShotTarget, rect: Option<egui::Rect>) {
        let tx = self.tx.clone();
        let ppp = ctx.pixels_per_point();
        let c = ctx.clone();
        self.pending += 1;
        self.requested.push(match target {
            ShotTarget::Window => "Window".into(),
            ShotTarget::View(p) => format!("{p:?}"),
        });
        ctx.request_screenshot(move |image| {
            let _ = tx.send(Shot {
                target,
                rect: rect.map(|r| (r, ppp)),
                image,
            });
            c.request_repaint();
        });
    }

    /// Write the screenshots that have arrived; one result per file.
    pub fn poll(&mut self, description: &serde_json::Value) -> Vec<Result<PathBuf, String>> {
        let shots: Vec<Shot> = self.rx.try_iter().collect();
        self.pending = self.pending.saturating_sub(shots.len());
        shots
            .into_iter()
            .map(|s| {
                let (w, h, rgba) = crop(&s.image, s.rect);
                let stamp = utc_stamp(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                );
                let path = self
                    .folder
                    .join(format!("warpscope-{}-{stamp}.png", s.target.name()));
                let mut desc = description.clone();
                desc["shot"] = serde_json::json!(s.target.name());
                let texts = [
                    (
                        "Software",
                        format!("Warpscope {}", env!("CARGO_PKG_VERSION")),
                    ),
                    ("warpscope", desc.to_string()),
                ];
                crate::render::png::write(&path, w, h, &rgba, &texts).map(|()| path)
            })
            .collect()
    }
}

/// The pixels of `image` inside `rect` (points × factor), as RGBA8 rows.
fn crop(image: &egui::ColorImage, rect: Option<(egui::Rect, f32)>) -> (u32, u32, Vec<u8>) {
    let [iw, ih] = image.size;
    let (x0, y0, x1, y1) = match rect {
        None => (0, 0, iw, ih),
        Some((r, ppp)) => {
            let c = |v: f32, max: usize| ((v * ppp).round().max(0.0) as usize).min(max);
            (
                c(r.min.x, iw),
                c(r.min.y, ih),
                c(r.max.x, iw),
                c(r.max.y, ih),
            )
        }
    };
    let (w, h) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
    let mut out = Vec::with_capacity(w * h * 4);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            let p = image
                .pixels
                .get(y.min(ih.saturating_sub(1)) * iw + x.min(iw.saturating_sub(1)))
                .copied()
                .unwrap_or(egui::Color32::BLACK);
            out.extend_from_slice(&p.to_array());
        }
    }
    (w as u32, h as u32, out)
}

/// `YYYYMMDD-HHMMSS` in UTC for seconds since 1970 (civil-from-days, H. Hinnant).
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2026-11-23 12:09:48 UTC
        assert_eq!(utc_stamp(1_795_435_788), "20261123-120948");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }

    #[test]
    fn views_are_cropped_in_pixels() {
        let mut img = egui::ColorImage::filled([8, 6], egui::Color32::BLACK);
        img.pixels[2 * 8 + 4] = egui::Color32::WHITE;
        let rect = egui::Rect::from_min_max(egui::pos2(1.0, 0.5), egui::pos2(3.0, 2.0));
        let (w, h, rgba) = crop(&img, Some((rect, 2.0)));
        assert_eq!((w, h), (4, 3));
        // Pixel (4, 2) of the image is (2, 1) of the crop.
        assert_eq!(&rgba[(4 + 2) * 4..(4 + 2) * 4 + 4], &[255, 255, 255, 255]);
    }
}
