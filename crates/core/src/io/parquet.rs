//! Tables as Apache Parquet files (the `parquet` crate of Apache Arrow's Rust implementation),
//! for pandas (`pd.read_parquet`), R (`arrow::read_parquet`), KNIME, DuckDB and Spark.
//!
//! A table is what the engine writes as CSV: a header and rows of text fields. Each column is
//! typed once, from its values: a column whose every non-empty field parses as a finite or
//! non-finite number (`1`, `2.5`, `NaN`, `inf`) is an optional `DOUBLE`, any other an optional
//! UTF-8 string; an empty field is a null either way (pandas reads it as `NaN` / `None`, as it
//! reads the empty CSV field). One row group of at most [`ROW_GROUP`] rows after another,
//! Snappy-compressed. Column names are the CSV headers unchanged (`area [px]` stays
//! `area [px]`); a repeated header is an error (Parquet readers reject it).

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::error::{Error, Result};

/// Rows per row group.
pub const ROW_GROUP: usize = 65_536;

/// The type a column is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Optional `DOUBLE`.
    Number,
    /// Optional UTF-8 `BYTE_ARRAY`.
    Text,
}

/// The type of column `c` of `rows`: [`ColumnType::Number`] when every non-empty field parses
/// as an `f64`, [`ColumnType::Text`] otherwise (also for a column with no value at all).
pub fn column_type(rows: &[Vec<String>], c: usize) -> ColumnType {
    let mut any = false;
    for r in rows {
        match r.get(c).map(String::as_str) {
            None | Some("") => {}
            Some(v) => {
                if v.trim().parse::<f64>().is_err() {
                    return ColumnType::Text;
                }
                any = true;
            }
        }
    }
    if any {
        ColumnType::Number
    } else {
        ColumnType::Text
    }
}

/// Field `c` of row `r`, empty when the row is short.
fn field(r: &[String], c: usize) -> &str {
    r.get(c).map(String::as_str).unwrap_or("")
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::format(path, format!("writing Parquet: {e}"))
}

/// Writes `header` and `rows` (short rows are padded with nulls) to `path` as Parquet,
/// atomically (a temporary file renamed into place; an existing file is replaced).
pub fn write_table(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) {
            return Err(Error::invalid(format!(
                "{}: column {h:?} appears twice; Parquet needs distinct column names",
                path.display()
            )));
        }
    }
    let types: Vec<ColumnType> = (0..header.len()).map(|c| column_type(rows, c)).collect();
    let fields = header
        .iter()
        .zip(&types)
        .map(|(name, t)| {
            let b = match t {
                ColumnType::Number => Type::primitive_type_builder(name, PhysicalType::DOUBLE),
                ColumnType::Text => Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String)),
            };
            b.with_repetition(Repetition::OPTIONAL)
                .build()
                .map(Arc::new)
                .map_err(|e| parquet_error(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let schema = Arc::new(
        Type::group_type_builder("cytoseg")
            .with_fields(fields)
            .build()
            .map_err(|e| parquet_error(path, e))?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("cytoseg {}", crate::VERSION))
            .build(),
    );
    crate::io::write_atomic(path, true, |f| {
        let mut w =
            SerializedFileWriter::new(f, schema, props).map_err(|e| parquet_error(path, e))?;
        for chunk in rows.chunks(ROW_GROUP) {
            let mut group = w.next_row_group().map_err(|e| parquet_error(path, e))?;
            for (c, t) in types.iter().enumerate() {
                let Some(mut col) = group.next_column().map_err(|e| parquet_error(path, e))? else {
                    return Err(Error::invalid("Parquet schema and columns disagree"));
                };
                let defs: Vec<i16> = chunk
                    .iter()
                    .map(|r| i16::from(!field(r, c).is_empty()))
                    .collect();
                match t {
                    ColumnType::Number => {
                        let v: Vec<f64> = chunk
                            .iter()
                            .map(|r| field(r, c))
                            .filter(|v| !v.is_empty())
                            .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
                            .collect();
                        col.typed::<DoubleType>()
                            .write_batch(&v, Some(&defs), None)
                            .map_err(|e| parquet_error(path, e))?;
                    }
                    ColumnType::Text => {
                        let v: Vec<ByteArray> = chunk
                            .iter()
                            .map(|r| field(r, c))
                            .filter(|v| !v.is_empty())
                            .map(|v| ByteArray::from(v.as_bytes().to_vec()))
                            .collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&v, Some(&defs), None)
                            .map_err(|e| parquet_error(path, e))?;
                    }
                }
                col.close().map_err(|e| parquet_error(path, e))?;
            }
            group.close().map_err(|e| parquet_error(path, e))?;
        }
        w.close().map_err(|e| parquet_error(path, e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn numbers_text_and_nulls_read_back() {
        let dir = std::env::temp_dir().join(format!("cytoseg-parquet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let header = s(&["well", "area [px]", "empty", "class"]);
        let rows = vec![
            s(&["A01", "12.5", "", "round"]),
            s(&["B02", "", "", ""]),
            s(&["C03", "NaN"]),
        ];
        assert_eq!(column_type(&rows, 1), ColumnType::Number);
        assert_eq!(column_type(&rows, 2), ColumnType::Text);
        write_table(&path, &header, &rows).unwrap();
        let r = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let schema = r.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["well", "area [px]", "empty", "class"]);
        let got: Vec<Vec<String>> = r
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(_, f)| match f {
                        Field::Null => "null".to_string(),
                        Field::Double(v) => format!("{v}"),
                        Field::Str(v) => v.clone(),
                        other => format!("?{other:?}"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            got,
            vec![
                s(&["A01", "12.5", "null", "round"]),
                s(&["B02", "null", "null", "null"]),
                s(&["C03", "NaN", "null", "null"]),
            ]
        );
        let dup = write_table(&path, &s(&["a", "a"]), &[]).unwrap_err();
        assert!(dup.to_string().contains("\"a\" appears twice"), "{dup}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
