//! The images loaded in their roles: what is shown, registered and measured.
//! Plain data (no GPU, no egui): the viewer uploads textures; this part
//! decides what a newly placed image changes.

use super::data::{LoadedImage, Role};

#[derive(Default)]
pub struct Images {
    pub fixed: Option<LoadedImage>,
    pub moving: Option<LoadedImage>,
    pub ic: Option<LoadedImage>,
    pub labels: Option<LoadedImage>,
    /// The fixed image's mask, for registration.
    pub mask: Option<LoadedImage>,
    /// The moving image's label map, for the Dice loss (with `labels` on
    /// the fixed grid).
    pub moving_labels: Option<LoadedImage>,
    /// Labels drawn in moving space (through the field) instead of fixed space.
    pub labels_in_moving: bool,
    /// Set when fixed and moving do not overlap in world space: the gap (mm).
    pub no_overlap_mm: Option<f64>,
}

/// What placing an image changed, for the viewer to act on.
#[derive(Debug, Default, PartialEq)]
pub struct Placed {
    /// A fixed image on another grid than the one it replaced (a field on
    /// the old grid must be read again; the views reframe).
    pub fixed_grid_changed: bool,
    /// Something to tell the user.
    pub notice: Option<String>,
}

impl Images {
    pub fn new(labels_in_moving: bool) -> Self {
        Self {
            labels_in_moving,
            ..Self::default()
        }
    }

    pub fn get(&self, role: Role) -> Option<&LoadedImage> {
        match role {
            Role::Fixed => self.fixed.as_ref(),
            Role::Moving => self.moving.as_ref(),
            Role::IcWeights => self.ic.as_ref(),
            Role::Labels => self.labels.as_ref(),
            Role::Mask => self.mask.as_ref(),
            Role::MovingLabels => self.moving_labels.as_ref(),
            Role::Field => None,
        }
    }

    pub fn get_mut(&mut self, role: Role) -> Option<&mut LoadedImage> {
        match role {
            Role::Fixed => self.fixed.as_mut(),
            Role::Moving => self.moving.as_mut(),
            Role::IcWeights => self.ic.as_mut(),
            Role::Labels => self.labels.as_mut(),
            Role::Mask => self.mask.as_mut(),
            Role::MovingLabels => self.moving_labels.as_mut(),
            Role::Field => None,
        }
    }

    /// Both images of the pair are loaded.
    pub fn pair(&self) -> bool {
        self.fixed.is_some() && self.moving.is_some()
    }

    /// Put `img` in `role` (a field is not an image: ignored). Labels on the
    /// moving grid (and not the fixed one) are drawn through the field.
    pub fn place(&mut self, role: Role, img: LoadedImage) -> Placed {
        let mut placed = Placed::default();
        match role {
            Role::Fixed => {
                placed.fixed_grid_changed = self
                    .fixed
                    .as_ref()
                    .is_none_or(|f| f.display.grid != img.display.grid);
                self.fixed = Some(img);
            }
            Role::Moving => self.moving = Some(img),
            Role::IcWeights => self.ic = Some(img),
            Role::Labels => {
                let on = |other: &Option<LoadedImage>| {
                    other
                        .as_ref()
                        .is_some_and(|o| o.volume.grid.same_as(&img.volume.grid))
                };
                match (on(&self.fixed), on(&self.moving)) {
                    (false, true) => self.labels_in_moving = true,
                    (true, false) => self.labels_in_moving = false,
                    _ => {}
                }
                self.labels = Some(img);
            }
            Role::Mask => {
                let inside = img.volume.data.iter().filter(|&&v| v > 0.5).count();
                placed.notice = Some(format!(
                    "fixed mask {}: registration compares only the {inside} voxels inside it",
                    img.name
                ));
                self.mask = Some(img);
            }
            Role::MovingLabels => self.moving_labels = Some(img),
            Role::Field => {}
        }
        self.no_overlap_mm = match (&self.fixed, &self.moving) {
            (Some(f), Some(m)) => crate::volume::world_gap_mm(&f.volume.grid, &m.volume.grid),
            _ => None,
        };
        placed
    }

    /// The window's title: the program and the files shown.
    pub fn title(&self) -> String {
        let mut title = "Warpscope".to_string();
        match (&self.fixed, &self.moving) {
            (Some(f), Some(m)) => title += &format!(" — {} ← {}", f.name, m.name),
            (Some(f), None) => title += &format!(" — {}", f.name),
            (None, Some(m)) => title += &format!(" — moving {}", m.name),
            (None, None) => {}
        }
        title
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::data::Limits;
    use crate::volume::{Grid, Volume, affine};

    fn image(name: &str, shift_mm: f64) -> LoadedImage {
        let mut m = affine::diagonal([1.0; 3]);
        m[0][3] = shift_mm;
        let g = Grid::new([8, 8, 8], m);
        let v = Volume::from_data(g, 1, (0..512).map(|i| (i % 7) as f32).collect())
            .expect("sizes match");
        LoadedImage::for_role(
            Role::Fixed,
            name.into(),
            None,
            v,
            None,
            &Limits(wgpu::Limits::default()),
        )
        .expect("fits")
    }

    #[test]
    fn a_pair_far_apart_reports_its_gap_and_the_title_names_both() {
        let mut i = Images::default();
        assert!(
            i.place(Role::Fixed, image("pre.nii", 0.0))
                .fixed_grid_changed
        );
        assert!(!i.pair());
        i.place(Role::Moving, image("post.nii", 30.0));
        assert!(i.pair());
        let gap = i.no_overlap_mm.expect("the boxes are apart");
        assert!((gap - 22.0).abs() < 1e-9, "{gap}"); // boxes reach half a voxel past the centres
        assert_eq!(i.title(), "Warpscope — pre.nii ← post.nii");
        i.place(Role::Moving, image("post.nii", 2.0));
        assert_eq!(i.no_overlap_mm, None);
    }

    #[test]
    fn the_same_fixed_grid_again_keeps_the_field() {
        let mut i = Images::default();
        i.place(Role::Fixed, image("a", 0.0));
        assert!(!i.place(Role::Fixed, image("b", 0.0)).fixed_grid_changed);
        assert!(i.place(Role::Fixed, image("c", 1.0)).fixed_grid_changed);
    }

    #[test]
    fn labels_on_the_moving_grid_are_drawn_through_the_field() {
        let mut i = Images::default();
        i.place(Role::Fixed, image("f", 0.0));
        i.place(Role::Moving, image("m", 5.0));
        i.place(Role::Labels, image("seg-m", 5.0));
        assert!(i.labels_in_moving);
        i.place(Role::Labels, image("seg-f", 0.0));
        assert!(!i.labels_in_moving);
        assert_eq!(i.get(Role::Labels).map(|l| l.name.as_str()), Some("seg-f"));
        assert!(i.get(Role::Field).is_none());
    }

    #[test]
    fn a_mask_says_how_much_it_keeps() {
        let mut i = Images::default();
        let mut m = image("mask", 0.0);
        m.volume.data.iter_mut().enumerate().for_each(|(k, v)| {
            *v = if k < 100 { 1.0 } else { 0.0 };
        });
        let n = i.place(Role::Mask, m).notice.expect("a notice");
        assert!(n.contains("100 voxels"), "{n}");
    }
}
