//! High-content screens: file-name layouts of plates, wells, fields (sites) and channels, and
//! the grouping of one field's channel files into one multi-channel image.
//!
//! Recognised layouts (names are matched on the file name; the plate may also come from the
//! folder):
//! * **ImageXpress** (Molecular Devices MetaXpress): `<plate>_<well>_s<site>_w<channel>.tif`,
//!   optionally with a 36-character identifier after the channel
//!   (`Plate1_B03_s2_w1A1B2C3D4-...tif`) and without `_s<site>` for single-site wells;
//!   thumbnails (`_thumb`) are left out.
//! * **Opera/Operetta** (Revvity Harmony export): `r<row>c<column>f<field>p<plane>-ch<channel>
//!   sk<...>fk<...>fl<...>.tiff` (`r02c05f03p01-ch2sk1fk1fl1.tiff`); the plate is the folder.
//! * **A pattern** with named fields over the path's end (see [`crate::qc::report::match_pattern`]):
//!   `well` (or `row` and `column`) and `channel` are required; `plate` and `site` optional.

pub mod classes;
pub mod dose;
pub mod merge;
pub mod platemap;
pub mod readouts;
pub mod select;
pub mod wells;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::batch::Input;
use crate::error::{Error, Result};
use crate::image::{Image, ImageData, Stack};
use crate::io::image::read_stack;
use crate::qc::report::match_pattern;

/// The segmentation channel of a screen field unless chosen: the first in channel order (w1,
/// ch1: by convention the nuclear stain), not the mean of all channels that an ordinary
/// multi-channel image gets.
pub const DEFAULT_SEGMENTATION_CHANNEL: usize = 0;

/// The position columns every table of a screen carries, in order.
pub const POSITION_COLUMNS: &[&str] = &["plate", "well", "row", "column", "site"];

/// The columns a screen's tables lead with: [`POSITION_COLUMNS`], then the plate map's columns
/// found in any of `fields` (alphabetically).
pub fn table_columns<'a>(
    fields: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> Vec<String> {
    let mut extra: Vec<String> = Vec::new();
    for f in fields {
        for k in f.keys() {
            if !POSITION_COLUMNS.contains(&k.as_str()) && k != "channels" && !extra.contains(k) {
                extra.push(k.clone());
            }
        }
    }
    extra.sort();
    POSITION_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(extra)
        .collect()
}

/// How the file names of a screen are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `<plate>_<well>_s<site>_w<channel>...`.
    ImageXpress,
    /// `r<row>c<column>f<field>p<plane>-ch<channel>...`.
    Operetta,
    /// A user's pattern with named fields.
    Pattern(String),
}

impl Layout {
    /// `imagexpress`, `operetta`, or a pattern (anything holding `{`).
    pub fn parse(s: &str) -> Result<Layout> {
        match s.to_ascii_lowercase().as_str() {
            "imagexpress" | "ixm" | "metaxpress" => Ok(Layout::ImageXpress),
            "operetta" | "opera" | "harmony" => Ok(Layout::Operetta),
            _ if s.contains('{') => Ok(Layout::Pattern(s.to_string())),
            _ => Err(Error::invalid(format!(
                "layout {s:?}: use imagexpress, operetta, auto or a pattern with named fields such as '{{plate}}/{{well}}_{{site}}_{{channel}}.tif'"
            ))),
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> String {
        match self {
            Layout::ImageXpress => "ImageXpress".into(),
            Layout::Operetta => "Opera/Operetta".into(),
            Layout::Pattern(p) => format!("pattern {p:?}"),
        }
    }
}

/// Where a file belongs in a screen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Plate name ("" when the layout gives none).
    pub plate: String,
    /// Well row, 1-based (A = 1).
    pub row: u32,
    /// Well column, 1-based.
    pub column: u32,
    /// Field (site) within the well ("1" when the layout gives none).
    pub site: String,
}

impl Position {
    /// The well as a name: row letter(s) and a two-digit column, `B03`.
    pub fn well(&self) -> String {
        format!("{}{:02}", row_letters(self.row), self.column)
    }

    /// The columns a table carries for this position: plate, well, row, column, site.
    pub fn fields(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("plate".to_string(), self.plate.clone()),
            ("well".to_string(), self.well()),
            ("row".to_string(), row_letters(self.row)),
            ("column".to_string(), self.column.to_string()),
            ("site".to_string(), self.site.clone()),
        ])
    }
}

/// `1 → A`, `26 → Z`, `27 → AA` (1536-well plates have 32 rows).
pub(crate) fn row_letters(mut r: u32) -> String {
    let mut s = Vec::new();
    while r > 0 {
        r -= 1;
        s.push(b'A' + (r % 26) as u8);
        r /= 26;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// `B03` → (2, 3); `AA1` → (27, 1).
pub(crate) fn parse_well(w: &str) -> Option<(u32, u32)> {
    let letters: String = w.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if letters.is_empty() || letters.len() > 2 {
        return None;
    }
    let col: u32 = w[letters.len()..].parse().ok()?;
    let row = letters
        .to_ascii_uppercase()
        .bytes()
        .fold(0u32, |acc, b| acc * 26 + (b - b'A' + 1) as u32);
    (col > 0).then_some((row, col))
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Where `path` belongs and its channel, under `layout`; `None` when the name does not fit.
pub fn locate(layout: &Layout, path: &Path) -> Option<(Position, String)> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
    match layout {
        Layout::ImageXpress => {
            if stem.to_ascii_lowercase().contains("_thumb") {
                return None;
            }
            // From the end: _w<channel>[uuid], optional _s<site>, _<well>, then the plate.
            let (rest, w) = stem.rsplit_once("_w")?;
            let channel: String = w.chars().take_while(char::is_ascii_digit).collect();
            let tail = &w[channel.len()..];
            if channel.is_empty() || !(tail.is_empty() || tail.len() == 36) {
                return None;
            }
            let (rest, site) = match rest.rsplit_once("_s") {
                Some((r, s)) if digits(s).is_some() => (r, s.to_string()),
                _ => (rest, "1".to_string()),
            };
            let (plate, well) = rest.rsplit_once('_')?;
            let (row, column) = parse_well(well)?;
            Some((
                Position {
                    plate: plate.to_string(),
                    row,
                    column,
                    site,
                },
                channel,
            ))
        }
        Layout::Operetta => {
            let s = stem.to_ascii_lowercase();
            let num = |key: &str, from: &str| -> Option<(u32, usize)> {
                let rest = from.strip_prefix(key)?;
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                Some((n.parse().ok()?, key.len() + n.len()))
            };
            let (row, a) = num("r", &s)?;
            let (column, b) = num("c", &s[a..])?;
            let (field, c) = num("f", &s[a + b..])?;
            let mut at = a + b + c;
            if let Some((_, d)) = num("p", &s[at..]) {
                at += d;
            }
            let (channel, _) = num("-ch", &s[at..])?;
            (row > 0 && column > 0).then(|| {
                (
                    Position {
                        plate: folder.clone(),
                        row,
                        column,
                        site: field.to_string(),
                    },
                    channel.to_string(),
                )
            })
        }
        Layout::Pattern(p) => {
            let f = match_pattern(p, &path.to_string_lossy())?;
            let (row, column) = match (f.get("well"), f.get("row"), f.get("column")) {
                (Some(w), _, _) => parse_well(w)?,
                (None, Some(r), Some(c)) => {
                    let row = digits(r).or_else(|| parse_well(&format!("{r}1")).map(|x| x.0))?;
                    (row, digits(c)?)
                }
                _ => return None,
            };
            Some((
                Position {
                    plate: f.get("plate").cloned().unwrap_or_default(),
                    row,
                    column,
                    site: f
                        .get("site")
                        .or(f.get("field"))
                        .cloned()
                        .unwrap_or_else(|| "1".into()),
                },
                f.get("channel").cloned().unwrap_or_else(|| "1".into()),
            ))
        }
    }
}

/// One field of a screen: its position and its channel files, ordered by channel (numerically
/// where the channels are numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Plate, well and site.
    pub position: Position,
    /// `(channel, file)` in channel order.
    pub channels: Vec<(String, PathBuf)>,
}

/// The layout that reads every file of `paths`: ImageXpress, else Opera/Operetta; `None` when
/// neither reads them all.
pub fn detect(paths: &[PathBuf]) -> Option<Layout> {
    [Layout::ImageXpress, Layout::Operetta]
        .into_iter()
        .find(|l| !paths.is_empty() && paths.iter().all(|p| locate(l, p).is_some()))
}

fn channel_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Groups the files of a screen into fields. Errors, naming the files: names the layout cannot
/// read, two files for the same field and channel, and fields missing a channel the others
/// have.
pub fn group_fields(paths: &[PathBuf], layout: &Layout) -> Result<Vec<Field>> {
    let mut unreadable = Vec::new();
    let mut by_pos: BTreeMap<Position, Vec<(String, PathBuf)>> = BTreeMap::new();
    for p in paths {
        match locate(layout, p) {
            Some((pos, ch)) => by_pos.entry(pos).or_default().push((ch, p.clone())),
            None => unreadable.push(p.display().to_string()),
        }
    }
    if !unreadable.is_empty() {
        let n = unreadable.len();
        unreadable.truncate(5);
        return Err(Error::invalid(format!(
            "{n} file name(s) do not fit the {} layout: {}{}",
            layout.name(),
            unreadable.join(", "),
            if n > 5 { ", ..." } else { "" }
        )));
    }
    let mut all_channels: Vec<String> = Vec::new();
    let mut fields = Vec::new();
    for (pos, mut files) in by_pos {
        files.sort_by(|a, b| channel_order(&a.0, &b.0).then(a.1.cmp(&b.1)));
        if let Some(w) = files.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid(format!(
                "two files for plate {:?}, well {}, site {}, channel {}: {} and {}",
                pos.plate,
                pos.well(),
                pos.site,
                w[0].0,
                w[0].1.display(),
                w[1].1.display()
            )));
        }
        for (c, _) in &files {
            if !all_channels.contains(c) {
                all_channels.push(c.clone());
            }
        }
        fields.push(Field {
            position: pos,
            channels: files,
        });
    }
    all_channels.sort_by(|a, b| channel_order(a, b));
    let incomplete: Vec<String> = fields
        .iter()
        .filter(|f| f.channels.len() != all_channels.len())
        .map(|f| {
            let missing: Vec<&str> = all_channels
                .iter()
                .filter(|c| !f.channels.iter().any(|(x, _)| x == *c))
                .map(String::as_str)
                .collect();
            format!(
                "{} (plate {:?}, well {}, site {}) lacks channel(s) {}",
                f.channels[0].1.display(),
                f.position.plate,
                f.position.well(),
                f.position.site,
                missing.join(", ")
            )
        })
        .collect();
    if !incomplete.is_empty() {
        let n = incomplete.len();
        return Err(Error::invalid(format!(
            "{n} field(s) miss channels (every field needs channels {}): {}{}",
            all_channels.join(", "),
            incomplete[..n.min(5)].join("; "),
            if n > 5 { "; ..." } else { "" }
        )));
    }
    Ok(fields)
}

/// Reads a field's channel files (one channel each, same size, planes and sample type) as one
/// stack with the channels interleaved in the given order. Errors name the file at fault.
pub fn read_field(files: &[PathBuf]) -> Result<Stack> {
    let stacks: Vec<Stack> = files.iter().map(|f| read_stack(f)).collect::<Result<_>>()?;
    let Some(first) = stacks.first() else {
        return Err(Error::invalid("a field with no channel files"));
    };
    for (f, st) in files.iter().zip(&stacks) {
        if st.channels != 1 {
            return Err(Error::invalid(format!(
                "{}: a screen's channel file must hold one channel, it holds {}",
                f.display(),
                st.channels
            )));
        }
        if (st.width, st.height, st.planes.len()) != (first.width, first.height, first.planes.len())
            || st.sample_type != first.sample_type
        {
            return Err(Error::invalid(format!(
                "{} is {}×{}, {} plane(s), {}; {} is {}×{}, {} plane(s), {}: the channels of a field must match",
                f.display(),
                st.width,
                st.height,
                st.planes.len(),
                st.sample_type,
                files[0].display(),
                first.width,
                first.height,
                first.planes.len(),
                first.sample_type
            )));
        }
    }
    let k = stacks.len();
    let n = first.width * first.height;
    let mut planes = Vec::with_capacity(first.planes.len());
    for p in 0..first.planes.len() {
        macro_rules! interleave {
            ($variant:ident, $t:ty) => {{
                let mut out: Vec<$t> = Vec::with_capacity(n * k);
                let srcs: Vec<&Vec<$t>> = stacks
                    .iter()
                    .map(|s| match &s.planes[p].data {
                        ImageData::$variant(v) => Ok(v),
                        _ => Err(Error::invalid("channel files differ in sample type")),
                    })
                    .collect::<Result<_>>()?;
                for i in 0..n {
                    for s in &srcs {
                        out.push(s[i]);
                    }
                }
                ImageData::$variant(out)
            }};
        }
        let data = match &first.planes[p].data {
            ImageData::U8(_) => interleave!(U8, u8),
            ImageData::U16(_) => interleave!(U16, u16),
            ImageData::F32(_) => interleave!(F32, f32),
        };
        planes.push(Image {
            data,
            width: first.width,
            height: first.height,
            channels: k,
        });
    }
    Ok(Stack {
        planes,
        width: first.width,
        height: first.height,
        channels: k,
        plane_axes: first.plane_axes.clone(),
        calibration: first.calibration.clone(),
        sample_type: first.sample_type.clone(),
    })
}

/// A screen's inputs: the image files of `inputs` (as [`crate::batch::expand_inputs`] finds
/// them) grouped into fields by `layout` (`None`: detected, ImageXpress or Opera/Operetta). One
/// input per field, its outputs at `<plate>/<well>_s<site>` (`<well>_s<site>` without a plate);
/// a `plate_map`'s columns join each field's fields (wells it does not list get none).
pub fn expand_screen(
    inputs: &[String],
    recursive: bool,
    out_dir: &Path,
    layout: Option<&Layout>,
    plate_map: Option<&platemap::PlateMap>,
) -> Result<(Layout, Vec<Input>)> {
    let files: Vec<PathBuf> = crate::batch::expand_inputs(inputs, recursive, out_dir)?
        .into_iter()
        .map(|i| i.path)
        .collect();
    let layout = match layout {
        Some(l) => l.clone(),
        None => detect(&files).ok_or_else(|| {
            let sample: Vec<String> = files.iter().take(3).map(|f| f.display().to_string()).collect();
            Error::invalid(format!(
                "the file names ({}{}) fit neither the ImageXpress (<plate>_<well>_s<site>_w<channel>) nor the Opera/Operetta (r01c01f01p01-ch1...) layout: give one with named fields, e.g. --layout '{{plate}}/{{well}}_{{site}}_{{channel}}.tif'",
                sample.join(", "),
                if files.len() > 3 { ", ..." } else { "" }
            ))
        })?,
    };
    let fields = group_fields(&files, &layout)?;
    let inputs = fields
        .into_iter()
        .map(|f| {
            let pos = &f.position;
            let name = format!("{}_s{}", pos.well(), pos.site);
            let stem = if pos.plate.is_empty() {
                PathBuf::from(name)
            } else {
                Path::new(&pos.plate).join(name)
            };
            let mut fields = pos.fields();
            if let Some(m) = plate_map
                && let Some(v) = m.well(&pos.plate, &pos.well())
            {
                fields.extend(v);
            }
            fields.insert(
                "channels".into(),
                f.channels
                    .iter()
                    .map(|c| c.0.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            Input {
                path: f.channels[0].1.clone(),
                stem,
                channels: f.channels.into_iter().map(|c| c.1).collect(),
                fields,
            }
        })
        .collect();
    Ok((layout, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn imagexpress_names() {
        let (pos, ch) = locate(&Layout::ImageXpress, &p("run/Plate_1_B03_s2_w1.tif")).unwrap();
        assert_eq!(
            (
                pos.plate.as_str(),
                pos.row,
                pos.column,
                pos.site.as_str(),
                ch.as_str()
            ),
            ("Plate_1", 2, 3, "2", "1")
        );
        assert_eq!(pos.well(), "B03");
        let (pos, ch) = locate(
            &Layout::ImageXpress,
            &p("P2_H12_w2A1B2C3D4-1111-2222-3333-444455556666.TIF"),
        )
        .unwrap();
        assert_eq!(
            (pos.row, pos.column, pos.site.as_str(), ch.as_str()),
            (8, 12, "1", "2")
        );
        assert!(locate(&Layout::ImageXpress, &p("P1_B03_s1_w1_thumb.tif")).is_none());
        assert!(locate(&Layout::ImageXpress, &p("random.tif")).is_none());
    }

    #[test]
    fn operetta_names() {
        let (pos, ch) = locate(
            &Layout::Operetta,
            &p("plateX/r02c05f03p01-ch2sk1fk1fl1.tiff"),
        )
        .unwrap();
        assert_eq!(
            (
                pos.plate.as_str(),
                pos.well().as_str(),
                pos.site.as_str(),
                ch.as_str()
            ),
            ("plateX", "B05", "3", "2")
        );
        assert!(locate(&Layout::Operetta, &p("r0c1f1-ch1.tiff")).is_none());
    }

    #[test]
    fn pattern_names_and_row_letters() {
        let l = Layout::parse("{plate}/{well}_f{site}_{channel}.png").unwrap();
        let (pos, ch) = locate(&l, &p("/x/PL7/AF48_f2_dapi.png")).unwrap();
        assert_eq!(
            (pos.plate.as_str(), pos.row, pos.column, ch.as_str()),
            ("PL7", 32, 48, "dapi")
        );
        assert_eq!(pos.well(), "AF48");
        assert_eq!(row_letters(26), "Z");
        assert_eq!(row_letters(27), "AA");
        assert!(Layout::parse("bogus").is_err());
    }

    #[test]
    fn grouping_and_its_errors() {
        let files: Vec<PathBuf> = [
            "P_A01_s1_w2.tif",
            "P_A01_s1_w1.tif",
            "P_A02_s1_w1.tif",
            "P_A02_s1_w2.tif",
        ]
        .iter()
        .map(|s| p(s))
        .collect();
        assert_eq!(detect(&files), Some(Layout::ImageXpress));
        let f = group_fields(&files, &Layout::ImageXpress).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0].channels
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        let e = group_fields(&files[..3], &Layout::ImageXpress)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("lacks channel(s) 2") && e.contains("P_A02_s1_w1.tif"),
            "{e}"
        );
        let mut dup = files.clone();
        dup.push(p("other/P_A01_s1_w1.tif"));
        let e = group_fields(&dup, &Layout::ImageXpress)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("two files") && e.contains("other/P_A01_s1_w1.tif"),
            "{e}"
        );
        let mut odd = files.clone();
        odd.push(p("notes.tif"));
        let e = group_fields(&odd, &Layout::ImageXpress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("notes.tif") && e.contains("ImageXpress"), "{e}");
        assert_eq!(detect(&odd), None);
    }
}
