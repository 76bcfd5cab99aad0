//! `<stem>_objects.csv`: one row per object of every plane, measured on all channels of the
//! input, calibrated (columns: see `cytoseg::core::measure`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::image::Stack;
use crate::measure::{Column, Table, measure};

/// Measures a segmented stack (labels: all planes, plane after plane) and writes the table
/// atomically (see [`objects_table`]).
pub fn write_objects(path: &Path, stack: &Stack, labels: &[u32]) -> Result<()> {
    objects_table(stack, labels)?.write_csv(path)
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
