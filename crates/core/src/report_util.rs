//! Small helpers shared by the self-contained HTML reports (`cytoseg qc`, `cytoseg validate`):
//! HTML escaping, base64 for `data:` URIs, and PNG encoding of RGB pictures.

use image::RgbImage;

use crate::error::{Error, Result};

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 (RFC 4648, with `=` padding) of `data`.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= ch.len() {
                s.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The style every report page shares (body, headings, tables, `.bad`, `.good`, `.note`).
pub const BASE_CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;max-width:1300px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.bad{color:#b00;font-weight:600}.good{color:#276}.note{color:#555;font-size:.9em}\n";

/// The start of a self-contained report page up to `<body>`: `title` (escaped here) and a
/// style sheet of [`BASE_CSS`] plus `css`.
pub fn html_head(title: &str, css: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{BASE_CSS}{css}\n</style></head><body>\n",
        esc(title)
    )
}

/// An `<img>` element showing the PNG `png` inline (a `data:` URI; nothing is fetched), with
/// `alt` (escaped here) as its text alternative.
pub fn png_img_tag(alt: &str, png: &[u8]) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64(png)
    )
}

/// The PNG encoding of `img`.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::invalid(format!("PNG encoding failed: {e}")))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert!(
            png_img_tag("x\"", b"f").contains("alt=\"x&quot;\" src=\"data:image/png;base64,Zg==\"")
        );
    }
}
