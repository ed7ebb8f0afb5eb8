//! Editing landmark pairs: add, move, remove, rename, import one side or
//! both, with undo and redo of every edit; the autosave format; checks of
//! imported points against the image they should belong to. No GUI here.

use serde::{Deserialize, Serialize};

use super::formats::Side;
use super::{Landmark, LandmarkSet};
use crate::volume::Grid;

/// A landmark id with its fixed and moving points (world RAS mm); either
/// may be missing while the pair is being built or after a one-sided import.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointPair {
    pub id: String,
    pub fixed: Option<[f64; 3]>,
    pub moving: Option<[f64; 3]>,
    /// The side whose point was proposed (carried across by the field, or
    /// copied without one) rather than placed: it measures nothing until
    /// the user moves or confirms it, so TRE leaves the pair out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed: Option<Side>,
    /// Columns of the file the pair came from that are not coordinates
    /// (e.g. `in_resection`), by name in file order: shown in the table and
    /// written back when the pairs are saved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, String)>,
}

impl PointPair {
    pub fn get(&self, side: Side) -> Option<[f64; 3]> {
        match side {
            Side::Fixed => self.fixed,
            Side::Moving => self.moving,
        }
    }

    /// One of its points as a landmark, with the pair's extra columns.
    fn landmark(&self, ras_mm: [f64; 3]) -> Landmark {
        Landmark {
            extra: self.extra.clone(),
            ..Landmark::new(self.id.clone(), ras_mm)
        }
    }

    /// The extra columns' names over all pairs, in order of appearance.
    pub fn extra_names(pairs: &[PointPair]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in pairs {
            for (n, _) in &p.extra {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        names
    }

    fn slot(&mut self, side: Side) -> &mut Option<[f64; 3]> {
        match side {
            Side::Fixed => &mut self.fixed,
            Side::Moving => &mut self.moving,
        }
    }
}

/// How many edits can be undone.
const HISTORY: usize = 200;

/// The landmark pairs being edited, with their history.
#[derive(Clone, Debug, Default)]
pub struct Editor {
    pairs: Vec<PointPair>,
    undo: Vec<Vec<PointPair>>,
    redo: Vec<Vec<PointPair>>,
    /// Bumped by every change (callers recompute TRE and autosave on it).
    generation: u64,
}

/// The autosave file: the pairs, nothing else.
#[derive(Serialize, Deserialize)]
struct Autosave {
    warpscope_landmarks: u32,
    /// RAS mm.
    pairs: Vec<PointPair>,
}

impl Editor {
    pub fn pairs(&self) -> &[PointPair] {
        &self.pairs
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&PointPair> {
        self.pairs.iter().find(|p| p.id == id)
    }

    /// Remember the current state for undo (call once before a drag, whose
    /// intermediate positions then go through [`Editor::place`]).
    pub fn checkpoint(&mut self) {
        self.undo.push(self.pairs.clone());
        if self.undo.len() > HISTORY {
            self.undo.remove(0);
        }
        self.redo.clear();
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    /// The next free numeric id ("1", "2", …).
    fn fresh_id(&self) -> String {
        let mut n = self.pairs.len() + 1;
        while self.get(&n.to_string()).is_some() {
            n += 1;
        }
        n.to_string()
    }

    /// Add a pair; returns its id.
    pub fn add(&mut self, fixed: Option<[f64; 3]>, moving: Option<[f64; 3]>) -> String {
        self.add_proposed(fixed, moving, None)
    }

    /// Add a pair whose `proposed` side was not placed by the user (see
    /// [`PointPair::proposed`]); returns its id.
    pub fn add_proposed(
        &mut self,
        fixed: Option<[f64; 3]>,
        moving: Option<[f64; 3]>,
        proposed: Option<Side>,
    ) -> String {
        self.checkpoint();
        let id = self.fresh_id();
        self.pairs.push(PointPair {
            id: id.clone(),
            fixed,
            moving,
            proposed,
            extra: Vec::new(),
        });
        self.changed();
        id
    }

    /// Set one side of a pair without a history entry (drags). `false` if no
    /// such id. A proposed point that is moved counts as placed.
    pub fn place(&mut self, id: &str, side: Side, ras_mm: [f64; 3]) -> bool {
        match self.pairs.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                *p.slot(side) = Some(ras_mm);
                if p.proposed == Some(side) {
                    p.proposed = None;
                }
                self.changed();
                true
            }
            None => false,
        }
    }

    /// Accept a pair's proposed point where it is, as one undoable edit.
    /// `false` if no such id or nothing to confirm.
    pub fn confirm(&mut self, id: &str) -> bool {
        if self.get(id).is_none_or(|p| p.proposed.is_none()) {
            return false;
        }
        self.checkpoint();
        if let Some(p) = self.pairs.iter_mut().find(|p| p.id == id) {
            p.proposed = None;
        }
        self.changed();
        true
    }

    /// Ids of the pairs with a proposed point.
    pub fn proposed_ids(&self) -> std::collections::HashSet<&str> {
        self.pairs
            .iter()
            .filter(|p| p.proposed.is_some())
            .map(|p| p.id.as_str())
            .collect()
    }

    /// Set one side of a pair, as one undoable edit.
    pub fn set_point(&mut self, id: &str, side: Side, ras_mm: [f64; 3]) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.checkpoint();
        self.place(id, side, ras_mm)
    }

    /// Remove a pair (both points).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(i) = self.pairs.iter().position(|p| p.id == id) else {
            return false;
        };
        self.checkpoint();
        self.pairs.remove(i);
        self.changed();
        true
    }

    /// Rename a pair; refused if the new id is empty or taken.
    pub fn rename(&mut self, id: &str, new_id: &str) -> Result<(), String> {
        let new_id = new_id.trim();
        if new_id.is_empty() {
            return Err("a landmark needs a non-empty name".into());
        }
        if new_id == id {
            return Ok(());
        }
        if self.get(new_id).is_some() {
            return Err(format!("a landmark named '{new_id}' exists already"));
        }
        let Some(i) = self.pairs.iter().position(|p| p.id == id) else {
            return Err(format!("no landmark named '{id}'"));
        };
        self.checkpoint();
        self.pairs[i].id = new_id.to_string();
        self.changed();
        Ok(())
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn undo(&mut self) -> bool {
        let Some(prev) = self.undo.pop() else {
            return false;
        };
        self.redo.push(std::mem::replace(&mut self.pairs, prev));
        self.changed();
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(next) = self.redo.pop() else {
            return false;
        };
        self.undo.push(std::mem::replace(&mut self.pairs, next));
        self.changed();
        true
    }

    /// Replace every pair (one undoable edit). Duplicate ids are made unique
    /// ("5", "5#2", …); the notice lists them.
    pub fn replace_all(&mut self, fixed: &LandmarkSet, moving: &LandmarkSet) -> Option<String> {
        self.checkpoint();
        self.pairs.clear();
        let mut notices = Vec::new();
        for (side, set) in [(Side::Fixed, fixed), (Side::Moving, moving)] {
            if let Some(n) = self.merge_side(side, set) {
                notices.push(n);
            }
        }
        self.changed();
        (!notices.is_empty()).then(|| notices.join("; "))
    }

    /// Replace one side's points by a file's (one undoable edit): points pair
    /// by id with the other side; pairs left with no point are removed.
    pub fn replace_side(&mut self, side: Side, set: &LandmarkSet) -> Option<String> {
        self.checkpoint();
        for p in &mut self.pairs {
            *p.slot(side) = None;
        }
        let notice = self.merge_side(side, set);
        self.pairs
            .retain(|p| p.fixed.is_some() || p.moving.is_some());
        self.changed();
        notice
    }

    fn merge_side(&mut self, side: Side, set: &LandmarkSet) -> Option<String> {
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        let mut renamed = Vec::new();
        for l in &set.points {
            let count = seen.entry(l.id.as_str()).or_insert(0);
            *count += 1;
            let id = if *count == 1 {
                l.id.clone()
            } else {
                let mut k = *count;
                let mut id = format!("{}#{k}", l.id);
                while set.get(&id).is_some() {
                    k += 1;
                    id = format!("{}#{k}", l.id);
                }
                renamed.push(format!("{} as {id}", l.id));
                id
            };
            match self.pairs.iter_mut().find(|p| p.id == id) {
                Some(p) => {
                    *p.slot(side) = Some(l.ras_mm);
                    if p.proposed == Some(side) {
                        p.proposed = None;
                    }
                    for (k, v) in &l.extra {
                        if !p.extra.iter().any(|(n, _)| n == k) {
                            p.extra.push((k.clone(), v.clone()));
                        }
                    }
                }
                None => {
                    let mut p = PointPair {
                        id,
                        fixed: None,
                        moving: None,
                        proposed: None,
                        extra: l.extra.clone(),
                    };
                    *p.slot(side) = Some(l.ras_mm);
                    self.pairs.push(p);
                }
            }
        }
        (!renamed.is_empty()).then(|| {
            format!(
                "duplicate landmark ids in the {} set were renamed: {}",
                side_name(side),
                renamed.join(", ")
            )
        })
    }

    /// As [`Editor::to_sets`], without the pairs that have a proposed point
    /// (what TRE is measured on).
    pub fn confirmed_sets(&self) -> (LandmarkSet, LandmarkSet) {
        self.sets(|p| p.proposed.is_none())
    }

    /// The two sides as landmark sets (in pair order, points present only).
    pub fn to_sets(&self) -> (LandmarkSet, LandmarkSet) {
        self.sets(|_| true)
    }

    /// Both sides of the pairs that `keep`, with the pairs' extra columns.
    fn sets(&self, keep: impl Fn(&PointPair) -> bool) -> (LandmarkSet, LandmarkSet) {
        let side = |s: Side| LandmarkSet {
            columns: PointPair::extra_names(&self.pairs),
            ..LandmarkSet::new(
                self.pairs
                    .iter()
                    .filter(|p| keep(p))
                    .filter_map(|p| p.get(s).map(|x| p.landmark(x)))
                    .collect(),
            )
        };
        (side(Side::Fixed), side(Side::Moving))
    }

    /// The autosave text (JSON).
    pub fn to_autosave(&self) -> String {
        let a = Autosave {
            warpscope_landmarks: 1,
            pairs: self.pairs.clone(),
        };
        serde_json::to_string_pretty(&a).unwrap_or_default()
    }

    /// Restore from autosave text (no history).
    pub fn from_autosave(text: &str) -> Result<Self, String> {
        let a: Autosave =
            serde_json::from_str(text).map_err(|e| format!("not a landmark autosave: {e}"))?;
        Self::from_pairs(a.pairs)
    }

    /// Start from saved pairs (no history); non-finite coordinates are refused.
    pub fn from_pairs(pairs: Vec<PointPair>) -> Result<Self, String> {
        if pairs
            .iter()
            .flat_map(|p| [p.fixed, p.moving])
            .flatten()
            .any(|x| x.iter().any(|v| !v.is_finite()))
        {
            return Err("the landmarks hold non-finite coordinates".into());
        }
        Ok(Self {
            pairs,
            ..Self::default()
        })
    }
}

pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Fixed => "fixed",
        Side::Moving => "moving",
    }
}

/// How a set of points sits in the image it should belong to.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Ids of points outside the image's voxel box.
    pub outside: Vec<String>,
    /// How many would lie inside with x and y negated (RAS ⇄ LPS).
    pub inside_if_mirrored: usize,
    pub total: usize,
}

impl Placement {
    pub fn of(set: &LandmarkSet, grid: &Grid) -> Self {
        let inside = |p: [f64; 3]| grid.contains_world(p, -0.5);
        Self {
            outside: set
                .points
                .iter()
                .filter(|l| !inside(l.ras_mm))
                .map(|l| l.id.clone())
                .collect(),
            inside_if_mirrored: set
                .points
                .iter()
                .filter(|l| inside([-l.ras_mm[0], -l.ras_mm[1], l.ras_mm[2]]))
                .count(),
            total: set.points.len(),
        }
    }

    /// A message for the user when points lie outside the image, naming the
    /// likely cause when mirroring would bring them in.
    pub fn notice(&self, what: &str) -> Option<String> {
        if self.outside.is_empty() {
            return None;
        }
        let shown: Vec<&str> = self.outside.iter().take(8).map(String::as_str).collect();
        let mut s = format!(
            "{} of {} {what} lie outside the image ({}{}): they are kept and flagged",
            self.outside.len(),
            self.total,
            shown.join(", "),
            if self.outside.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
        let inside_now = self.total - self.outside.len();
        if self.inside_if_mirrored > inside_now {
            s += &format!(
                "; with x and y negated {} of {} would lie inside: the file's coordinate \
                 system (RAS/LPS) header may be wrong",
                self.inside_if_mirrored, self.total
            );
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::affine;

    /// A proposed point counts as placed once moved or confirmed; confirming
    /// is one undo step; the autosave keeps which points are proposed.
    #[test]
    fn proposed_points_until_moved_or_confirmed() {
        let mut e = Editor::default();
        let a = e.add_proposed(Some([1.0; 3]), Some([2.0; 3]), Some(Side::Moving));
        let b = e.add_proposed(Some([3.0; 3]), Some([4.0; 3]), Some(Side::Moving));
        assert_eq!(e.proposed_ids().len(), 2);
        // Moving the other side leaves it proposed; moving it places it.
        e.place(&a, Side::Fixed, [1.5; 3]);
        assert_eq!(e.get(&a).and_then(|p| p.proposed), Some(Side::Moving));
        e.place(&a, Side::Moving, [2.5; 3]);
        assert_eq!(e.get(&a).and_then(|p| p.proposed), None);
        let restored = Editor::from_autosave(&e.to_autosave()).expect("autosave");
        assert_eq!(
            restored.proposed_ids().into_iter().collect::<Vec<_>>(),
            [b.as_str()]
        );
        assert!(e.confirm(&b));
        assert!(e.proposed_ids().is_empty());
        assert!(!e.confirm(&b), "nothing left to confirm");
        assert!(e.undo());
        assert_eq!(
            e.proposed_ids().into_iter().collect::<Vec<_>>(),
            [b.as_str()]
        );
    }

    #[test]
    fn edits_undo_and_redo() {
        let mut e = Editor::default();
        let a = e.add(Some([1.0, 2.0, 3.0]), Some([1.5, 2.0, 3.0]));
        let b = e.add(Some([4.0, 5.0, 6.0]), None);
        assert_eq!((a.as_str(), b.as_str()), ("1", "2"));
        assert!(e.set_point("2", Side::Moving, [4.0, 5.5, 6.0]));
        // A drag: one checkpoint, many placements, one undo step.
        e.checkpoint();
        for k in 0..5 {
            e.place("1", Side::Fixed, [1.0 + k as f64, 2.0, 3.0]);
        }
        assert_eq!(e.get("1").and_then(|p| p.fixed), Some([5.0, 2.0, 3.0]));
        assert!(e.undo());
        assert_eq!(e.get("1").and_then(|p| p.fixed), Some([1.0, 2.0, 3.0]));
        assert!(e.redo());
        assert_eq!(e.get("1").and_then(|p| p.fixed), Some([5.0, 2.0, 3.0]));
        assert!(e.rename("2", "apex").is_ok());
        assert!(e.rename("1", "apex").is_err(), "duplicate name refused");
        assert!(e.rename("1", "  ").is_err(), "empty name refused");
        assert!(e.remove("apex"));
        assert_eq!(e.pairs().len(), 1);
        while e.undo() {}
        assert!(e.is_empty(), "undo goes back to the start");
        assert!(!e.can_undo() && e.can_redo());
        let before = e.generation();
        e.redo();
        assert!(e.generation() > before);
        // A new edit clears the redo list.
        e.add(None, None);
        assert!(!e.can_redo());
    }

    #[test]
    fn imports_pair_by_id_and_rename_duplicates() {
        let set = |pts: &[(&str, f64)]| {
            LandmarkSet::new(
                pts.iter()
                    .map(|(id, x)| Landmark::new(*id, [*x, 0.0, 0.0]))
                    .collect(),
            )
        };
        let mut e = Editor::default();
        let n = e.replace_all(
            &set(&[("a", 1.0), ("b", 2.0), ("a", 3.0)]),
            &set(&[("b", 20.0), ("c", 30.0)]),
        );
        let notice = n.unwrap_or_default();
        assert!(notice.contains("a as a#2"), "{notice}");
        let ids: Vec<&str> = e.pairs().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "a#2", "c"]);
        assert_eq!(e.get("b").and_then(|p| p.moving), Some([20.0, 0.0, 0.0]));
        assert_eq!(e.get("c").and_then(|p| p.fixed), None);
        // Replacing the moving side keeps the fixed points and drops emptied pairs.
        e.replace_side(Side::Moving, &set(&[("a", 10.0)]));
        let ids: Vec<&str> = e.pairs().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "a#2"]);
        assert_eq!(e.get("a").and_then(|p| p.moving), Some([10.0, 0.0, 0.0]));
        assert_eq!(e.get("b").and_then(|p| p.moving), None);
        let (f, m) = e.to_sets();
        assert_eq!((f.points.len(), m.points.len()), (3, 1));
        assert!(e.undo());
        assert_eq!(e.get("c").and_then(|p| p.moving), Some([30.0, 0.0, 0.0]));
    }

    #[test]
    fn autosave_round_trips_and_refuses_junk() {
        let mut e = Editor::default();
        e.add(Some([1.25, -2.0, 3.0]), Some([1.0, 2.0, 3.0]));
        e.add(Some([4.0, 5.0, 6.0]), None);
        let back = Editor::from_autosave(&e.to_autosave()).expect("restore");
        assert_eq!(back.pairs(), e.pairs());
        assert!(Editor::from_autosave("{}").is_err());
        assert!(Editor::from_autosave("not json").is_err());
    }

    #[test]
    fn points_from_a_mirrored_system_are_flagged_with_the_likely_cause() {
        // A 40 mm box centred at x = +30: LPS coordinates read as RAS land at x = −30.
        let mut a = affine::diagonal([1.0; 3]);
        a[0][3] = 10.0;
        let grid = Grid::new([40, 40, 40], a);
        let set = LandmarkSet::new(vec![
            Landmark::new("1", [-30.0, -5.0, 10.0]),
            Landmark::new("2", [-25.0, -10.0, 20.0]),
        ]);
        let p = Placement::of(&set, &grid);
        assert_eq!(p.outside.len(), 2);
        let n = p.notice("fixed landmarks").unwrap_or_default();
        assert!(n.contains("2 of 2 fixed landmarks lie outside"), "{n}");
        assert!(n.contains("coordinate system"), "{n}");
        let inside = LandmarkSet::new(vec![Landmark::new("1", [30.0, 5.0, 10.0])]);
        assert_eq!(Placement::of(&inside, &grid).notice("x"), None);
    }
}
