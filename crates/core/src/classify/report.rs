//! The cross-validated confusion matrix of a classifier as text, CSV and an SVG heatmap.

use std::fmt::Write as _;

use super::Classifier;
use crate::measure::csv_field;
use crate::report_util::esc;

/// The confusion matrix as an aligned text table (rows: true class, columns: predicted), with
/// the accuracies.
pub fn confusion_text(c: &Classifier) -> String {
    let v = &c.validation;
    let w = c
        .classes
        .iter()
        .map(|s| s.chars().count())
        .chain([9])
        .max()
        .unwrap_or(9);
    let mut s = format!(
        "{}-fold cross-validated accuracy {:.4}, out-of-bag accuracy {:.4}\n{:>w$}",
        v.folds, v.cv_accuracy, v.oob_accuracy, "true\\pred"
    );
    for name in &c.classes {
        let _ = write!(s, " {name:>w$}");
    }
    s.push('\n');
    for (name, row) in c.classes.iter().zip(&v.confusion) {
        let _ = write!(s, "{name:>w$}");
        for n in row {
            let _ = write!(s, " {n:>w$}");
        }
        s.push('\n');
    }
    s
}

/// The confusion matrix as CSV: a first column `true\predicted` with the true class, then one
/// column of counts per predicted class.
pub fn confusion_csv(c: &Classifier) -> String {
    let mut s = String::from("true\\predicted");
    for name in &c.classes {
        s += &format!(",{}", csv_field(name));
    }
    s.push('\n');
    for (name, row) in c.classes.iter().zip(&c.validation.confusion) {
        s += &csv_field(name);
        for n in row {
            s += &format!(",{n}");
        }
        s.push('\n');
    }
    s
}

/// The confusion matrix as an SVG heatmap: cells shaded by the fraction of their true class,
/// counts written in them, the accuracies in the title.
pub fn confusion_svg(c: &Classifier) -> String {
    let k = c.classes.len() as f64;
    let (cell, left, top) = (64.0, 130.0, 90.0);
    let (width, height) = (left + cell * k + 20.0, top + cell * k + 20.0);
    let v = &c.validation;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"10\" y=\"20\" font-size=\"13\" font-weight=\"600\">{}-fold CV accuracy {:.3}, OOB {:.3}</text>\
         <text x=\"{}\" y=\"44\" font-size=\"11\" text-anchor=\"middle\">predicted</text>\
         <text x=\"10\" y=\"{}\" font-size=\"11\">true</text>",
        v.folds,
        v.cv_accuracy,
        v.oob_accuracy,
        left + cell * k / 2.0,
        top - 8.0
    );
    for (j, name) in c.classes.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            left + cell * (j as f64 + 0.5),
            top - 8.0,
            esc(name)
        );
    }
    for (i, (name, row)) in c.classes.iter().zip(&v.confusion).enumerate() {
        let y = top + cell * i as f64;
        let total: u64 = row.iter().sum::<u64>().max(1);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + cell / 2.0 + 4.0,
            esc(name)
        );
        for (j, n) in row.iter().enumerate() {
            let f = *n as f64 / total as f64;
            let shade = (255.0 - f * 200.0).round() as u8;
            let ink = if f > 0.6 { "white" } else { "black" };
            let x = left + cell * j as f64;
            let _ = write!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"rgb({shade},{shade},255)\" stroke=\"#888\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"14\" text-anchor=\"middle\" fill=\"{ink}\">{n}</text>",
                cell,
                cell,
                x + cell / 2.0,
                y + cell / 2.0 + 5.0
            );
        }
    }
    s += "</svg>\n";
    s
}
