//! Landmark file formats. All readers return world RAS mm; all writers take
//! it and convert to the file's convention. Writes are atomic.
//!
//! - Pair CSV (the shared data's `landmarks.csv`): `id,fx,fy,fz,mx,my,mz,…`,
//!   RAS mm, a fixed point and its moving counterpart per row.
//! - BraTS-Reg CSV: `Landmark,X,Y,Z`, voxel indices (x = i, y = j, z = k) of
//!   the image the points belong to. The index base is an argument
//!   ([`IndexBase`]); Warpscope's default is 0, as in ITK and NumPy.
//! - 3D Slicer `.fcsv`: `# CoordinateSystem = LPS | RAS | 0 (RAS) | 1 (LPS)`
//!   (RAS when absent, as Slicer before 4.11 wrote), `# columns = …`; the
//!   `label` column names the point.
//! - 3D Slicer `.mrk.json`: `markups[].controlPoints[]` with `label` and
//!   `position`; `coordinateSystem` LPS (the schema's default) or RAS; points
//!   whose `positionStatus` is "undefined" are skipped.

use std::path::Path;

use serde_json::{Value, json};

use super::{Landmark, LandmarkError, LandmarkSet};
use crate::volume::Grid;
use crate::volume::affine;

/// World coordinate convention of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateSystem {
    Ras,
    Lps,
}

impl CoordinateSystem {
    /// Convert a point between this system and RAS (the map is its own inverse).
    pub fn to_ras(self, p: [f64; 3]) -> [f64; 3] {
        match self {
            CoordinateSystem::Ras => p,
            CoordinateSystem::Lps => [-p[0], -p[1], p[2]],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CoordinateSystem::Ras => "RAS",
            CoordinateSystem::Lps => "LPS",
        }
    }
}

/// Whether voxel indices in a BraTS-Reg CSV count from 0 or from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IndexBase {
    #[default]
    Zero,
    One,
}

impl IndexBase {
    fn offset(self) -> f64 {
        match self {
            IndexBase::Zero => 0.0,
            IndexBase::One => 1.0,
        }
    }
}

/// The file formats, as detected by [`detect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    PairCsv,
    BratsCsv,
    Fcsv,
    MrkJson,
}

/// Guess a format from the file name and its first line.
pub fn detect(path: &Path, text: &str) -> Option<Format> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".mrk.json") || name.ends_with(".json") {
        return Some(Format::MrkJson);
    }
    if name.ends_with(".fcsv") {
        return Some(Format::Fcsv);
    }
    let header = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let cols: Vec<String> = split_csv(header)
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let has = |c: &str| cols.iter().any(|x| x == c);
    if ["id", "fx", "fy", "fz", "mx", "my", "mz"]
        .iter()
        .all(|c| has(c))
    {
        Some(Format::PairCsv)
    } else if ["landmark", "x", "y", "z"].iter().all(|c| has(c)) {
        Some(Format::BratsCsv)
    } else {
        None
    }
}

fn read_text(path: &Path) -> Result<String, LandmarkError> {
    std::fs::read_to_string(path)
        .map_err(|e| LandmarkError::new(&path.display().to_string(), None, e.to_string()))
}

fn write_text(path: &Path, text: &str) -> Result<(), LandmarkError> {
    crate::atomic::write_text(path, text)
        .map_err(|e| LandmarkError::new(&path.display().to_string(), None, e.to_string()))
}

/// Read a single landmark set in any format. BraTS-Reg CSVs need the grid
/// of the image the points belong to. A pair CSV gives its fixed points
/// with `which = Side::Fixed`, its moving points with `Side::Moving`.
pub fn read_set(
    path: &Path,
    grid: Option<&Grid>,
    base: IndexBase,
    which: Side,
) -> Result<LandmarkSet, LandmarkError> {
    let text = read_text(path)?;
    let name = path.display().to_string();
    match detect(path, &text) {
        Some(Format::PairCsv) => {
            let (f, m) = parse_pair_csv(&text, &name)?;
            Ok(if which == Side::Fixed { f } else { m })
        }
        Some(Format::BratsCsv) => {
            let grid = grid.ok_or_else(|| {
                LandmarkError::new(
                    &name,
                    None,
                    "a BraTS-Reg CSV holds voxel indices: the image it belongs to is needed",
                )
            })?;
            parse_brats_csv(&text, &name, grid, base)
        }
        Some(Format::Fcsv) => parse_fcsv(&text, &name),
        Some(Format::MrkJson) => parse_mrk_json(&text, &name),
        None => Err(LandmarkError::new(
            &name,
            None,
            "unknown landmark format: expected .fcsv, .mrk.json, a BraTS-Reg CSV (Landmark,X,Y,Z) or a pair CSV (id,fx,fy,fz,mx,my,mz)",
        )),
    }
}

/// Which half of a pair CSV to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Fixed,
    Moving,
}

// ------------------------------------------------------------------ CSV basics

/// Split one CSV line: commas, with double-quoted fields and "" escapes.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line, quoting fields that need it.
pub fn csv_line(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

fn number(s: &str, name: &str, line: usize, column: &str) -> Result<f64, LandmarkError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LandmarkError::new(
            name,
            Some(line),
            format!("column {column}: '{s}' is not a finite number"),
        )),
    }
}

/// Shortest text that reads back to the same f64.
fn num(v: f64) -> String {
    format!("{v}")
}

/// Parsed CSV: header columns and (line number, fields) rows, skipping blank and `#` lines.
struct Table {
    columns: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

fn table(text: &str, name: &str) -> Result<Table, LandmarkError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines
        .next()
        .ok_or_else(|| LandmarkError::new(name, None, "no header line"))?;
    let columns: Vec<String> = split_csv(header)
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, l) in lines {
        let fields = split_csv(l);
        if fields.len() != columns.len() {
            return Err(LandmarkError::new(
                name,
                Some(i + 1),
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    columns.len()
                ),
            ));
        }
        rows.push((i + 1, fields));
    }
    Ok(Table { columns, rows })
}

fn column(columns: &[String], want: &str, name: &str) -> Result<usize, LandmarkError> {
    columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case(want))
        .ok_or_else(|| LandmarkError::new(name, None, format!("missing column '{want}'")))
}

fn extras(columns: &[String], fields: &[String], used: &[usize]) -> Vec<(String, String)> {
    columns
        .iter()
        .zip(fields)
        .enumerate()
        .filter(|(i, _)| !used.contains(i))
        .map(|(_, (c, f))| (c.clone(), f.clone()))
        .collect()
}

// ------------------------------------------------------------------ pair CSV

pub fn parse_pair_csv(text: &str, name: &str) -> Result<(LandmarkSet, LandmarkSet), LandmarkError> {
    let t = table(text, name)?;
    let idx: Vec<usize> = ["id", "fx", "fy", "fz", "mx", "my", "mz"]
        .iter()
        .map(|c| column(&t.columns, c, name))
        .collect::<Result<_, _>>()?;
    let mut fixed = LandmarkSet {
        points: Vec::new(),
        columns: t.columns.clone(),
    };
    let mut moving = LandmarkSet {
        points: Vec::new(),
        columns: t.columns.clone(),
    };
    for (line, f) in &t.rows {
        let n = |k: usize| number(&f[idx[k]], name, *line, &t.columns[idx[k]]);
        let id = f[idx[0]].trim().to_string();
        let extra = extras(&t.columns, f, &idx);
        fixed.points.push(Landmark {
            id: id.clone(),
            ras_mm: [n(1)?, n(2)?, n(3)?],
            extra: extra.clone(),
        });
        moving.points.push(Landmark {
            id,
            ras_mm: [n(4)?, n(5)?, n(6)?],
            extra,
        });
    }
    Ok((fixed, moving))
}

/// Write paired points (by id; extras from the fixed set) as a pair CSV.
pub fn write_pair_csv(
    path: &Path,
    fixed: &LandmarkSet,
    moving: &LandmarkSet,
) -> Result<(), LandmarkError> {
    let pairing = super::pair_by_id(fixed, moving);
    let standard = ["id", "fx", "fy", "fz", "mx", "my", "mz"];
    let mut columns: Vec<String> = standard.iter().map(|s| s.to_string()).collect();
    for c in &fixed.columns {
        if !standard.iter().any(|s| c.eq_ignore_ascii_case(s)) {
            columns.push(c.clone());
        }
    }
    let mut text = csv_line(&columns) + "\n";
    for (i, j) in pairing.pairs {
        let (f, m) = (&fixed.points[i], &moving.points[j]);
        let mut row = vec![f.id.clone()];
        row.extend(f.ras_mm.iter().chain(&m.ras_mm).map(|v| num(*v)));
        for c in &columns[7..] {
            row.push(f.extra(c).unwrap_or("").to_string());
        }
        text += &(csv_line(&row) + "\n");
    }
    write_text(path, &text)
}

// ------------------------------------------------------------------ BraTS-Reg CSV

pub fn parse_brats_csv(
    text: &str,
    name: &str,
    grid: &Grid,
    base: IndexBase,
) -> Result<LandmarkSet, LandmarkError> {
    let t = table(text, name)?;
    let idx: Vec<usize> = ["landmark", "x", "y", "z"]
        .iter()
        .map(|c| column(&t.columns, c, name))
        .collect::<Result<_, _>>()?;
    let mut set = LandmarkSet {
        points: Vec::new(),
        columns: t.columns.clone(),
    };
    for (line, f) in &t.rows {
        let n = |k: usize| number(&f[idx[k]], name, *line, &t.columns[idx[k]]);
        let ijk = [
            n(1)? - base.offset(),
            n(2)? - base.offset(),
            n(3)? - base.offset(),
        ];
        set.points.push(Landmark {
            id: f[idx[0]].trim().to_string(),
            ras_mm: grid.voxel_to_world(ijk),
            extra: extras(&t.columns, f, &idx),
        });
    }
    Ok(set)
}

pub fn write_brats_csv(
    path: &Path,
    set: &LandmarkSet,
    grid: &Grid,
    base: IndexBase,
) -> Result<(), LandmarkError> {
    let name = path.display().to_string();
    let inv = affine::inverse(&grid.affine).ok_or_else(|| {
        LandmarkError::new(&name, None, "the image's voxel-to-world matrix is singular")
    })?;
    let standard = ["landmark", "x", "y", "z"];
    let mut columns: Vec<String> = vec!["Landmark".into(), "X".into(), "Y".into(), "Z".into()];
    for c in &set.columns {
        if !standard.iter().any(|s| c.eq_ignore_ascii_case(s)) {
            columns.push(c.clone());
        }
    }
    let mut text = csv_line(&columns) + "\n";
    for p in &set.points {
        let v = affine::apply(&inv, p.ras_mm);
        let mut row = vec![p.id.clone()];
        row.extend(v.iter().map(|x| num(round_index(x + base.offset()))));
        for c in &columns[4..] {
            row.push(p.extra(c).unwrap_or("").to_string());
        }
        text += &(csv_line(&row) + "\n");
    }
    write_text(path, &text)
}

/// Snap values within float noise of an integer (voxel indices usually are).
fn round_index(v: f64) -> f64 {
    let r = v.round();
    if (v - r).abs() < 1e-6 { r } else { v }
}

// ------------------------------------------------------------------ Slicer .fcsv

const FCSV_COLUMNS: [&str; 14] = [
    "id",
    "x",
    "y",
    "z",
    "ow",
    "ox",
    "oy",
    "oz",
    "vis",
    "sel",
    "lock",
    "label",
    "desc",
    "associatedNodeID",
];

pub fn parse_fcsv(text: &str, name: &str) -> Result<LandmarkSet, LandmarkError> {
    let mut cs = CoordinateSystem::Ras;
    let mut columns: Vec<String> = FCSV_COLUMNS.iter().map(|s| s.to_string()).collect();
    for (i, line) in text.lines().enumerate() {
        let Some(comment) = line.strip_prefix('#') else {
            continue;
        };
        let Some((key, value)) = comment.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "coordinatesystem" => {
                cs = match value.trim().to_ascii_uppercase().as_str() {
                    "RAS" | "0" => CoordinateSystem::Ras,
                    "LPS" | "1" => CoordinateSystem::Lps,
                    other => {
                        return Err(LandmarkError::new(
                            name,
                            Some(i + 1),
                            format!("unknown CoordinateSystem '{other}'"),
                        ));
                    }
                }
            }
            "columns" => columns = value.split(',').map(|c| c.trim().to_string()).collect(),
            _ => {}
        }
    }
    let ix = column(&columns, "x", name)?;
    let iy = column(&columns, "y", name)?;
    let iz = column(&columns, "z", name)?;
    let ilabel = columns.iter().position(|c| c == "label");
    let iid = columns.iter().position(|c| c == "id");
    let mut set = LandmarkSet {
        points: Vec::new(),
        columns: columns.clone(),
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f = split_csv(line);
        if f.len() < columns.len() {
            return Err(LandmarkError::new(
                name,
                Some(i + 1),
                format!(
                    "{} fields, but the columns line names {}",
                    f.len(),
                    columns.len()
                ),
            ));
        }
        let p = [
            number(&f[ix], name, i + 1, "x")?,
            number(&f[iy], name, i + 1, "y")?,
            number(&f[iz], name, i + 1, "z")?,
        ];
        let label = ilabel.map(|k| f[k].trim()).filter(|s| !s.is_empty());
        let id = label
            .or_else(|| iid.map(|k| f[k].trim()))
            .unwrap_or("")
            .to_string();
        let id = if id.is_empty() {
            format!("{}", set.points.len() + 1)
        } else {
            id
        };
        let used: Vec<usize> = [Some(ix), Some(iy), Some(iz), ilabel]
            .into_iter()
            .flatten()
            .collect();
        set.points.push(Landmark {
            id,
            ras_mm: cs.to_ras(p),
            extra: extras(&columns, &f[..columns.len()], &used),
        });
    }
    Ok(set)
}

pub fn write_fcsv(
    path: &Path,
    set: &LandmarkSet,
    cs: CoordinateSystem,
) -> Result<(), LandmarkError> {
    let columns: Vec<String> = if ["x", "y", "z", "label"]
        .iter()
        .all(|c| set.columns.iter().any(|s| s == c))
    {
        set.columns.clone()
    } else {
        FCSV_COLUMNS.iter().map(|s| s.to_string()).collect()
    };
    let mut text = format!(
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = {}\n",
        cs.name()
    );
    text += &format!("# columns = {}\n", columns.join(","));
    for (n, p) in set.points.iter().enumerate() {
        let c = cs.to_ras(p.ras_mm);
        let row: Vec<String> = columns
            .iter()
            .map(|col| match col.as_str() {
                "x" => num(c[0]),
                "y" => num(c[1]),
                "z" => num(c[2]),
                "label" => p.id.clone(),
                other => p
                    .extra(other)
                    .map(str::to_string)
                    .unwrap_or_else(|| match other {
                        "id" => format!("{}", n + 1),
                        "ow" | "ox" | "oy" => "0".into(),
                        "oz" | "vis" | "sel" => "1".into(),
                        "lock" => "0".into(),
                        _ => String::new(),
                    }),
            })
            .collect();
        text += &(csv_line(&row) + "\n");
    }
    write_text(path, &text)
}

// ------------------------------------------------------------------ Slicer .mrk.json

pub fn parse_mrk_json(text: &str, name: &str) -> Result<LandmarkSet, LandmarkError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| LandmarkError::new(name, Some(e.line()), format!("not valid JSON: {e}")))?;
    let markups = doc
        .get("markups")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            LandmarkError::new(
                name,
                None,
                "no 'markups' array (not a Slicer markups file?)",
            )
        })?;
    let mut set = LandmarkSet {
        points: Vec::new(),
        columns: vec!["mrk.json".into()],
    };
    for (m, markup) in markups.iter().enumerate() {
        let cs = match markup
            .get("coordinateSystem")
            .and_then(Value::as_str)
            .unwrap_or("LPS")
        {
            "LPS" => CoordinateSystem::Lps,
            "RAS" => CoordinateSystem::Ras,
            other => {
                return Err(LandmarkError::new(
                    name,
                    None,
                    format!("markup {m}: unknown coordinateSystem '{other}'"),
                ));
            }
        };
        let points = markup
            .get("controlPoints")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (k, cp) in points.iter().enumerate() {
            if cp.get("positionStatus").and_then(Value::as_str) == Some("undefined") {
                continue;
            }
            let pos = cp
                .get("position")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 3);
            let pos: Option<Vec<f64>> = pos.map(|a| {
                a.iter()
                    .filter_map(Value::as_f64)
                    .filter(|v| v.is_finite())
                    .collect()
            });
            let Some(pos) = pos.filter(|p| p.len() == 3) else {
                return Err(LandmarkError::new(
                    name,
                    None,
                    format!(
                        "markup {m}, control point {k}: 'position' must be three finite numbers"
                    ),
                ));
            };
            let id = cp
                .get("label")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or_else(|| cp.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}", set.points.len() + 1));
            let extra = cp
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(key, _)| !matches!(key.as_str(), "label" | "position"))
                        .map(|(key, v)| (key.clone(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            set.points.push(Landmark {
                id,
                ras_mm: cs.to_ras([pos[0], pos[1], pos[2]]),
                extra,
            });
        }
    }
    Ok(set)
}

pub fn write_mrk_json(
    path: &Path,
    set: &LandmarkSet,
    cs: CoordinateSystem,
) -> Result<(), LandmarkError> {
    let points: Vec<Value> = set
        .points
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let mut o = serde_json::Map::new();
            // Fields kept from the source file come back as they were (they are JSON text).
            for (k, v) in &p.extra {
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                o.insert(k.clone(), value);
            }
            o.entry("id").or_insert_with(|| json!(format!("{}", n + 1)));
            o.insert("label".into(), json!(p.id));
            o.insert("position".into(), json!(cs.to_ras(p.ras_mm)));
            o.entry("positionStatus")
                .or_insert_with(|| json!("defined"));
            Value::Object(o)
        })
        .collect();
    let doc = json!({
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [{
            "type": "Fiducial",
            "coordinateSystem": cs.name(),
            "coordinateUnits": "mm",
            "controlPoints": points,
        }]
    });
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| LandmarkError::new(&path.display().to_string(), None, e.to_string()))?;
    write_text(path, &(text + "\n"))
}
