//! Reading an ONNX model's graph and writing new weights into a copy of it, at the protobuf
//! wire level.
//!
//! Only the fields the trainer needs are decoded (nodes, initializers, the graph's inputs and
//! outputs). Writing never re-encodes from a partial schema: [`rewrite`] copies every byte of
//! the original model and replaces only the initializers it is given (and, optionally, one
//! dimension of the graph input), so fields this reader does not know survive unchanged.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// ONNX `TensorProto.DataType` of 32-bit floats.
pub const FLOAT: i32 = 1;
/// ONNX `TensorProto.DataType` of 64-bit integers.
pub const INT64: i32 = 7;

/// One attribute value of a node (the kinds this trainer reads).
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `f`.
    Float(f32),
    /// `i`.
    Int(i64),
    /// `s`.
    Bytes(Vec<u8>),
    /// `ints`.
    Ints(Vec<i64>),
    /// `floats`.
    Floats(Vec<f32>),
    /// `t`.
    Tensor(Tensor),
    /// Any other kind (graphs, strings...), not read.
    Other,
}

/// A node of the graph.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Operator, e.g. `Conv`.
    pub op_type: String,
    /// Operator domain (empty for the default ONNX domain).
    pub domain: String,
    /// Input value names (empty string: an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attrs.get(name) {
            Some(Attr::Int(v)) => *v,
            _ => default,
        }
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attrs.get(name) {
            Some(Attr::Float(v)) => *v,
            _ => default,
        }
    }

    /// An integer-list attribute, or `None`.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// A string attribute (lossy UTF-8), or `None`.
    pub fn string(&self, name: &str) -> Option<String> {
        match self.attrs.get(name) {
            Some(Attr::Bytes(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }
    }
}

/// A tensor (initializer or constant), decoded to `f32` or `i64` values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    /// Name (initializers).
    pub name: String,
    /// Dimensions.
    pub dims: Vec<usize>,
    /// ONNX data type ([`FLOAT`], [`INT64`], ...).
    pub data_type: i32,
    /// Values when the type is float.
    pub floats: Vec<f32>,
    /// Values when the type is int64.
    pub ints: Vec<i64>,
}

/// A graph input or output.
#[derive(Debug, Clone, Default)]
pub struct ValueInfo {
    /// Name.
    pub name: String,
    /// Dimensions: `Some(n)` fixed, `None` symbolic or absent.
    pub dims: Vec<Option<i64>>,
}

/// The decoded parts of an ONNX model.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Nodes, in the file's (topological) order.
    pub nodes: Vec<Node>,
    /// Initializers by name.
    pub initializers: HashMap<String, Tensor>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
}

/// A protobuf wire-format reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field: number, wire type, and its payload (varint value, or the bytes of a
/// length-delimited / fixed field), plus the byte range of the whole field.
struct Field<'a> {
    number: u64,
    varint: u64,
    bytes: &'a [u8],
    start: usize,
    end: usize,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(format!("ONNX model: {}", msg.into()))
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(bad("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| bad("field length overflows"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("field runs past the end of its message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<Field<'a>>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        let (varint, bytes) = match key & 7 {
            0 => (self.varint()?, &[][..]),
            1 => (0, self.take(8)?),
            2 => {
                let n = self.varint()?;
                (0, self.take(n)?)
            }
            5 => (0, self.take(4)?),
            w => return Err(bad(format!("unsupported wire type {w} (field {number})"))),
        };
        Ok(Some(Field {
            number,
            varint,
            bytes,
            start,
            end: self.pos,
        }))
    }
}

fn text(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a name is not UTF-8"))
}

/// Packed or single varint values of a repeated integer field.
fn push_ints(f: &Field<'_>, wire_len_delimited: bool, out: &mut Vec<i64>) -> Result<()> {
    if wire_len_delimited {
        let mut r = Reader::new(f.bytes);
        while r.pos < f.bytes.len() {
            out.push(r.varint()? as i64);
        }
    } else {
        out.push(f.varint as i64);
    }
    Ok(())
}

fn is_len_delimited(buf: &[u8], f: &Field<'_>) -> bool {
    // the key's wire type is the low 3 bits of the key's first byte
    buf[f.start] & 7 == 2
}

fn push_floats(b: &[u8], out: &mut Vec<f32>) {
    out.extend(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

fn parse_tensor(buf: &[u8]) -> Result<Tensor> {
    let mut t = Tensor::default();
    let mut raw: Option<&[u8]> = None;
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        let ld = is_len_delimited(buf, &f);
        match f.number {
            1 => {
                let mut d = Vec::new();
                push_ints(&f, ld, &mut d)?;
                for v in d {
                    t.dims
                        .push(usize::try_from(v).map_err(|_| bad("negative tensor dimension"))?);
                }
            }
            2 => t.data_type = f.varint as i32,
            // packed (length-delimited) or one fixed32: the payload is little-endian floats
            4 => push_floats(f.bytes, &mut t.floats),
            7 => push_ints(&f, ld, &mut t.ints)?,
            8 => t.name = text(f.bytes)?,
            9 => raw = Some(f.bytes),
            13 | 14 => {
                return Err(bad(format!(
                    "tensor {:?} keeps its data outside the file (external data is not supported)",
                    t.name
                )));
            }
            _ => {}
        }
    }
    let count = t
        .dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("tensor size overflows"))?;
    if let Some(raw) = raw {
        match t.data_type {
            FLOAT => push_floats(raw, &mut t.floats),
            INT64 => t.ints.extend(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
            ),
            _ => {}
        }
    }
    let got = match t.data_type {
        FLOAT => t.floats.len(),
        INT64 => t.ints.len(),
        _ => count,
    };
    if got != count {
        return Err(bad(format!(
            "tensor {:?} has {got} values for dimensions {:?}",
            t.name, t.dims
        )));
    }
    Ok(t)
}

fn parse_attr(buf: &[u8]) -> Result<(String, Attr)> {
    let mut name = String::new();
    let mut attr = Attr::Other;
    let mut ints = Vec::new();
    let mut floats = Vec::new();
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        match f.number {
            1 => name = text(f.bytes)?,
            2 => {
                attr = Attr::Float(f32::from_le_bytes([
                    f.bytes[0], f.bytes[1], f.bytes[2], f.bytes[3],
                ]))
            }
            3 => attr = Attr::Int(f.varint as i64),
            4 => attr = Attr::Bytes(f.bytes.to_vec()),
            5 => attr = Attr::Tensor(parse_tensor(f.bytes)?),
            7 => push_floats(f.bytes, &mut floats),
            8 => push_ints(&f, is_len_delimited(buf, &f), &mut ints)?,
            _ => {}
        }
    }
    if !ints.is_empty() {
        attr = Attr::Ints(ints);
    } else if !floats.is_empty() {
        attr = Attr::Floats(floats);
    }
    Ok((name, attr))
}

fn parse_node(buf: &[u8]) -> Result<Node> {
    let mut n = Node::default();
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        match f.number {
            1 => n.inputs.push(text(f.bytes)?),
            2 => n.outputs.push(text(f.bytes)?),
            4 => n.op_type = text(f.bytes)?,
            5 => {
                let (k, v) = parse_attr(f.bytes)?;
                n.attrs.insert(k, v);
            }
            7 => n.domain = text(f.bytes)?,
            _ => {}
        }
    }
    Ok(n)
}

fn parse_value_info(buf: &[u8]) -> Result<ValueInfo> {
    let mut v = ValueInfo::default();
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        match f.number {
            1 => v.name = text(f.bytes)?,
            2 => v.dims = type_dims(f.bytes)?,
            _ => {}
        }
    }
    Ok(v)
}

/// TypeProto → tensor_type (1) → shape (2) → dim (1) → dim_value (1).
fn type_dims(buf: &[u8]) -> Result<Vec<Option<i64>>> {
    let mut dims = Vec::new();
    for tt in fields(buf, 1)? {
        for shape in fields(tt, 2)? {
            for dim in fields(shape, 1)? {
                let mut value = None;
                let mut r = Reader::new(dim);
                while let Some(f) = r.next()? {
                    if f.number == 1 {
                        value = Some(f.varint as i64);
                    }
                }
                dims.push(value);
            }
        }
    }
    Ok(dims)
}

/// The payloads of every field `number` of a message.
fn fields(buf: &[u8], number: u64) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        if f.number == number {
            out.push(f.bytes);
        }
    }
    Ok(out)
}

/// Decodes the graph of an ONNX `ModelProto`.
pub fn parse(model: &[u8]) -> Result<Graph> {
    let graphs = fields(model, 7)?;
    let gbuf = match graphs.as_slice() {
        [g] => *g,
        [] => return Err(bad("no graph")),
        _ => return Err(bad("more than one graph")),
    };
    let mut g = Graph::default();
    let mut inputs = Vec::new();
    let mut r = Reader::new(gbuf);
    while let Some(f) = r.next()? {
        match f.number {
            1 => g.nodes.push(parse_node(f.bytes)?),
            5 => {
                let t = parse_tensor(f.bytes)?;
                g.initializers.insert(t.name.clone(), t);
            }
            11 => inputs.push(parse_value_info(f.bytes)?),
            12 => g.outputs.push(parse_value_info(f.bytes)?),
            _ => {}
        }
    }
    g.inputs = inputs
        .into_iter()
        .filter(|v| !g.initializers.contains_key(&v.name))
        .collect();
    Ok(g)
}

/// What [`rewrite`] changes in a copy of a model.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    /// New float values (and dimensions) of initializers, by name.
    pub initializers: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// New value of one fixed dimension of one graph input: (input name, axis, value).
    pub input_dim: Option<(String, usize, i64)>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Re-encodes a TensorProto with new dims and float data (as `raw_data`), keeping its other
/// fields (name, data type, doc string...) byte for byte.
fn rewrite_tensor(buf: &[u8], dims: &[usize], values: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 4 + 64);
    let mut dims_written = false;
    let mut r = Reader::new(buf);
    while let Some(f) = r.next()? {
        match f.number {
            1 => {
                if !dims_written {
                    let mut packed = Vec::new();
                    for &d in dims {
                        put_varint(&mut packed, d as u64);
                    }
                    put_len_field(&mut out, 1, &packed);
                    dims_written = true;
                }
            }
            4 | 9 => {}
            _ => out.extend_from_slice(&buf[f.start..f.end]),
        }
    }
    if !dims_written && !dims.is_empty() {
        let mut packed = Vec::new();
        for &d in dims {
            put_varint(&mut packed, d as u64);
        }
        put_len_field(&mut out, 1, &packed);
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    put_len_field(&mut out, 9, &raw);
    Ok(out)
}

fn tensor_name(buf: &[u8]) -> Result<String> {
    Ok(fields(buf, 8)?
        .first()
        .map(|b| text(b))
        .transpose()?
        .unwrap_or_default())
}

/// Rewrites one dimension of a ValueInfoProto's tensor shape.
fn rewrite_value_info(buf: &[u8], axis: usize, value: i64) -> Result<Vec<u8>> {
    // ValueInfo → type (2) → tensor_type (1) → shape (2) → dim (1)[axis] → dim_value (1)
    fn edit(buf: &[u8], path: &[u64], axis: usize, value: i64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        let mut r = Reader::new(buf);
        let mut k = 0usize;
        while let Some(f) = r.next()? {
            if path.is_empty() {
                // inside a Dimension: replace dim_value / dim_param by dim_value
                if f.number == 1 || f.number == 2 {
                    continue;
                }
                out.extend_from_slice(&buf[f.start..f.end]);
            } else if f.number == path[0] {
                let is_dim = path.len() == 1;
                if is_dim && k != axis {
                    k += 1;
                    out.extend_from_slice(&buf[f.start..f.end]);
                    continue;
                }
                k += 1;
                let inner = if is_dim {
                    let mut d = edit(f.bytes, &[], axis, value)?;
                    put_varint(&mut d, 1 << 3);
                    put_varint(&mut d, value as u64);
                    d
                } else {
                    edit(f.bytes, &path[1..], axis, value)?
                };
                put_len_field(&mut out, f.number, &inner);
            } else {
                out.extend_from_slice(&buf[f.start..f.end]);
            }
        }
        Ok(out)
    }
    edit(buf, &[2, 1, 2, 1], axis, value)
}

/// A copy of `model` with the initializers of `edits` replaced (and the input dimension
/// changed); every other byte is kept. Fails if an edited initializer is not in the graph.
pub fn rewrite(model: &[u8], edits: &Edits) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(model.len() + 1024);
    let mut seen = 0usize;
    let mut r = Reader::new(model);
    while let Some(f) = r.next()? {
        if f.number != 7 {
            out.extend_from_slice(&model[f.start..f.end]);
            continue;
        }
        let mut g = Vec::with_capacity(f.bytes.len() + 1024);
        let mut gr = Reader::new(f.bytes);
        while let Some(gf) = gr.next()? {
            let whole = &f.bytes[gf.start..gf.end];
            match gf.number {
                5 => {
                    let name = tensor_name(gf.bytes)?;
                    match edits.initializers.get(&name) {
                        Some((dims, values)) => {
                            seen += 1;
                            put_len_field(&mut g, 5, &rewrite_tensor(gf.bytes, dims, values)?);
                        }
                        None => g.extend_from_slice(whole),
                    }
                }
                11 => match &edits.input_dim {
                    Some((name, axis, value))
                        if fields(gf.bytes, 1)?.first() == Some(&name.as_bytes()) =>
                    {
                        put_len_field(&mut g, 11, &rewrite_value_info(gf.bytes, *axis, *value)?)
                    }
                    _ => g.extend_from_slice(whole),
                },
                _ => g.extend_from_slice(whole),
            }
        }
        put_len_field(&mut out, 7, &g);
    }
    if seen != edits.initializers.len() {
        return Err(bad(format!(
            "{} of {} edited initializers are not in the graph",
            edits.initializers.len() - seen,
            edits.initializers.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nuclei() -> Option<Vec<u8>> {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/nuclei/model.onnx");
        std::fs::read(p).ok()
    }

    #[test]
    fn parses_the_bundled_graph() {
        let Some(bytes) = nuclei() else { return };
        let g = parse(&bytes).unwrap();
        let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
        assert_eq!(count("Conv"), 41);
        assert_eq!(count("BatchNormalization"), 33);
        assert_eq!(count("Gemm"), 12);
        assert_eq!(g.initializers.len(), 222);
        assert_eq!(g.inputs.len(), 1);
        assert_eq!(g.inputs[0].name, "image");
        assert_eq!(g.inputs[0].dims, vec![None, Some(1), None, None]);
        let conv = g.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
        assert_eq!(conv.ints("kernel_shape"), Some(&[1i64, 1][..]));
        let params: usize = g
            .initializers
            .values()
            .filter(|t| !t.name.contains("running"))
            .map(|t| t.floats.len())
            .sum();
        assert!(params > 1_600_000, "{params}");
    }

    #[test]
    fn unchanged_rewrite_is_byte_identical_and_edits_land() {
        let Some(bytes) = nuclei() else { return };
        assert_eq!(rewrite(&bytes, &Edits::default()).unwrap(), bytes);
        let g = parse(&bytes).unwrap();
        let t = &g.initializers["down.0.proj.1.weight"];
        let mut e = Edits::default();
        let v: Vec<f32> = (0..32).map(|i| i as f32).collect();
        e.initializers
            .insert(t.name.clone(), (vec![16, 2, 1, 1], v.clone()));
        e.input_dim = Some(("image".into(), 1, 2));
        let out = rewrite(&bytes, &e).unwrap();
        let g2 = parse(&out).unwrap();
        assert_eq!(g2.initializers[&t.name].floats, v);
        assert_eq!(g2.initializers[&t.name].dims, vec![16, 2, 1, 1]);
        assert_eq!(g2.inputs[0].dims, vec![None, Some(2), None, None]);
        assert_eq!(g2.nodes.len(), g.nodes.len());
        let mut missing = Edits::default();
        missing
            .initializers
            .insert("nope".into(), (vec![1], vec![0.0]));
        assert!(rewrite(&bytes, &missing).is_err());
    }

    #[test]
    fn hostile_bytes_give_errors() {
        for b in [
            &[0xffu8; 12][..],
            &[0x3a, 0x80],
            &[0x3a, 0x05, 0x0a],
            &[0x0b],
        ] {
            assert!(parse(b).is_err() || parse(b).unwrap().nodes.is_empty());
        }
    }
}
