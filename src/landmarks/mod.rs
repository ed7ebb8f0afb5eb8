//! Landmark sets: named points in world RAS millimetres, paired by id between
//! a fixed and a moving image.
//!
//! Formats (see [`formats`]): BraTS-Reg CSV (`Landmark,X,Y,Z`, voxel indices
//! of the image the points belong to), 3D Slicer `.fcsv` and `.mrk.json`
//! (LPS or RAS, as their headers say), and the shared data's pair CSV
//! (`id,fx,fy,fz,mx,my,mz,…`). Columns we do not interpret are kept and
//! written back.

pub mod edit;
pub mod formats;

use std::fmt;

/// One named point.
#[derive(Clone, Debug, PartialEq)]
pub struct Landmark {
    pub id: String,
    pub ras_mm: [f64; 3],
    /// Values of columns/fields this module does not interpret, by name, in file order.
    pub extra: Vec<(String, String)>,
}

impl Landmark {
    pub fn new(id: impl Into<String>, ras_mm: [f64; 3]) -> Self {
        Self {
            id: id.into(),
            ras_mm,
            extra: Vec::new(),
        }
    }

    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A list of landmarks, with the column layout of the file they came from
/// (so a round trip writes the same columns back).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LandmarkSet {
    pub points: Vec<Landmark>,
    /// Column names of the source file in order (empty for sets made in memory).
    pub columns: Vec<String>,
}

impl LandmarkSet {
    pub fn new(points: Vec<Landmark>) -> Self {
        Self {
            points,
            columns: Vec::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Landmark> {
        self.points.iter().find(|p| p.id == id)
    }
}

/// Fixed and moving landmarks matched by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pairing {
    /// (index in fixed, index in moving), in fixed order.
    pub pairs: Vec<(usize, usize)>,
    /// Ids present only in the fixed set.
    pub fixed_only: Vec<String>,
    /// Ids present only in the moving set.
    pub moving_only: Vec<String>,
    /// Ids that occur more than once in either set (only their first occurrence is paired).
    pub duplicates: Vec<String>,
}

impl Pairing {
    /// A one-line account of what did not pair, or `None` when everything did.
    pub fn notice(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.fixed_only.is_empty() {
            parts.push(format!(
                "{} fixed landmark(s) without a moving partner ({})",
                self.fixed_only.len(),
                list(&self.fixed_only)
            ));
        }
        if !self.moving_only.is_empty() {
            parts.push(format!(
                "{} moving landmark(s) without a fixed partner ({})",
                self.moving_only.len(),
                list(&self.moving_only)
            ));
        }
        if !self.duplicates.is_empty() {
            parts.push(format!("duplicate id(s) {}", list(&self.duplicates)));
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }
}

fn list(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(8).map(String::as_str).collect();
    if ids.len() > shown.len() {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Pair two sets by id.
pub fn pair_by_id(fixed: &LandmarkSet, moving: &LandmarkSet) -> Pairing {
    use std::collections::HashMap;
    let mut out = Pairing::default();
    let mut moving_index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in moving.points.iter().enumerate() {
        match moving_index.entry(p.id.as_str()) {
            std::collections::hash_map::Entry::Occupied(_) => out.duplicates.push(p.id.clone()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in fixed.points.iter().enumerate() {
        if !seen.insert(p.id.as_str()) {
            out.duplicates.push(p.id.clone());
            continue;
        }
        match moving_index.get(p.id.as_str()) {
            Some(&j) => out.pairs.push((i, j)),
            None => out.fixed_only.push(p.id.clone()),
        }
    }
    for p in &moving.points {
        if !seen.contains(p.id.as_str()) && !out.moving_only.contains(&p.id) {
            out.moving_only.push(p.id.clone());
        }
    }
    out.duplicates.sort();
    out.duplicates.dedup();
    out
}

/// A landmark file that could not be read or written.
#[derive(Debug)]
pub struct LandmarkError {
    pub path: String,
    /// 1-based line number, where the problem is on one line.
    pub line: Option<usize>,
    pub detail: String,
}

impl LandmarkError {
    pub fn new(path: &str, line: Option<usize>, detail: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            line,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for LandmarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path, l, self.detail),
            None => write!(f, "{}: {}", self.path, self.detail),
        }
    }
}

impl std::error::Error for LandmarkError {}
