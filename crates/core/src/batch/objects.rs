//! `<stem>_objects.csv`: one row per object of every plane, measured on all channels of the
//! input, calibrated (columns: see `cytoseg::core::measure`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::image::Stack;
use crate::measure::{Column, Table, csv_field, measure};

/// Writes an objects table ([`objects_table`], [`objects_table_3d`]) atomically; a screen
/// field's `fields` (plate, well, row, column, site, then the plate map's columns) lead every
/// row.
pub fn write_objects(path: &Path, table: &Table, fields: &BTreeMap<String, String>) -> Result<()> {
    if fields.is_empty() {
        return table.write_csv(path);
    }
    let mut lead_header = String::new();
    let mut lead = String::new();
    for f in crate::screen::table_columns([fields]) {
        lead_header += &format!("{},", csv_field(&f));
        lead += &format!(
            "{},",
            csv_field(fields.get(&f).map(String::as_str).unwrap_or(""))
        );
    }
    let text = table.to_csv();
    let mut out = String::with_capacity(text.len() + (lead.len() + 1) * (table.n_rows() + 1));
    for (i, line) in text.lines().enumerate() {
        out += if i == 0 { &lead_header } else { &lead };
        out += line;
        out.push('\n');
    }
    crate::io::write_atomic(path, true, |w| {
        use std::io::Write;
        w.write_all(out.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

/// The objects table of a segmented stack (labels: all planes, plane after plane, numbered per
/// plane): the measurement columns on every channel, calibrated; stacks get leading plane
/// columns (`t`, `z`: 0-based plane coordinates).
pub fn objects_table(stack: &Stack, labels: &[u32]) -> Result<Table> {
    let n = stack.width * stack.height;
    let mut merged: Option<Table> = None;
    for (i, (plane, image)) in labels.chunks(n).zip(&stack.planes).enumerate() {
        let view = image.view()?;
        let mut t = measure(
            plane,
            stack.height,
            stack.width,
            Some(&view),
            &stack.calibration,
        )
        .map_err(|e| Error::invalid(format!("measuring plane {i}: {e}")))?;
        if !stack.plane_axes.is_empty() {
            let rows = t.n_rows();
            let coords: Vec<Column> = stack
                .plane_coords(i)
                .into_iter()
                .map(|(axis, c)| Column {
                    name: axis.to_string(),
                    unit: None,
                    values: vec![c as f64; rows],
                })
                .collect();
            t.columns.splice(0..0, coords);
        }
        match merged.as_mut() {
            None => merged = Some(t),
            Some(m) => {
                for (a, b) in m.columns.iter_mut().zip(t.columns) {
                    a.values.extend(b.values);
                }
            }
        }
    }
    Ok(merged.unwrap_or_default())
}

/// The objects table of a stack segmented into 3-D objects (labels: `planes × height × width`):
/// `regionprops_table` on the volume (`area` is the volume) with every channel's intensities,
/// calibrated with the stack's pixel size and `z_spacing` (in the same unit).
pub fn objects_table_3d(stack: &Stack, labels: &[u32], z_spacing: f64) -> Result<Table> {
    crate::measure::measure_stack(
        labels,
        [stack.planes.len(), stack.height, stack.width],
        Some(stack),
        &stack.calibration,
        z_spacing,
    )
}
