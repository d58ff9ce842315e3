//! numpy's `.npy` format (version 1.0, little-endian `f64`), with the checksum of the
//! data kept in the header as a Python comment, which `numpy.load` ignores:
//!
//! ```text
//! \x93NUMPY \x01 \x00 <u16 header length> {'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), } # gridpipe fnv1a64=<16 hex> bytes=<n>   ...\n <data>
//! ```
//!
//! So every file is self-describing and self-checking: no side file or shared
//! index can disagree with it, and several writers never contend for one.

use super::hash::fnv1a64;
use ndarray::{ArrayD, IxDyn};

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";
const PREFIX: usize = 10;

/// Encodes a C-ordered `f64` array as a checksummed `.npy` file.
pub fn encode(a: &ArrayD<f64>) -> Vec<u8> {
    let data: Vec<u8> = match a.as_slice() {
        Some(s) => s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        None => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let shape = match a.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }} # gridpipe fnv1a64={:016x} bytes={}",
        fnv1a64(&data),
        data.len()
    );
    let unpadded = PREFIX + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(PREFIX + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// What a header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Offset of the data in the file.
    pub data_offset: usize,
    /// Length of the data in bytes.
    pub data_len: usize,
    /// The data's checksum.
    pub checksum: u64,
}

impl Header {
    /// The file's full length.
    pub fn file_len(&self) -> usize {
        self.data_offset + self.data_len
    }
}

/// Parses the header at the start of `bytes` (which may hold only the header).
pub fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < PREFIX || &bytes[..8] != MAGIC {
        return Err("not a version 1.0 .npy file".into());
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let text = bytes.get(PREFIX..PREFIX + hlen).ok_or("header cut short")?;
    let text = std::str::from_utf8(text).map_err(|_| "header is not text")?;
    if !text.contains("'descr': '<f8'") || !text.contains("'fortran_order': False") {
        return Err("only little-endian f64 C-order arrays are supported".into());
    }
    let shape_text = text
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("header has no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let field = |name: &str| {
        text.split(name)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string)
    };
    let checksum = field("fnv1a64=")
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .ok_or("header has no gridpipe checksum")?;
    let data_len = field("bytes=")
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or("header has no data length")?;
    if data_len != shape.iter().product::<usize>() * 8 {
        return Err("data length does not match the shape".into());
    }
    Ok(Header {
        shape,
        data_offset: PREFIX + hlen,
        data_len,
        checksum,
    })
}

/// Decodes a whole checksummed file, verifying length and checksum.
pub fn decode(bytes: &[u8]) -> Result<ArrayD<f64>, String> {
    let h = parse_header(bytes)?;
    if bytes.len() != h.file_len() {
        return Err(format!(
            "file is {} bytes, its header says {} (truncated or extended)",
            bytes.len(),
            h.file_len()
        ));
    }
    let data = &bytes[h.data_offset..];
    if fnv1a64(data) != h.checksum {
        return Err("checksum mismatch (the data was changed or corrupted)".into());
    }
    let values = data
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    ArrayD::from_shape_vec(IxDyn(&h.shape), values).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn round_trips_and_aligns_the_header() {
        for a in [
            array![[1.0, 2.0], [3.0, 4.5]].into_dyn(),
            array![1.0, -2.0, 3.0].into_dyn(),
            ArrayD::from_elem(IxDyn(&[]), 7.0),
        ] {
            let bytes = encode(&a);
            let h = parse_header(&bytes).unwrap();
            assert_eq!(h.data_offset % 64, 0);
            assert_eq!(h.file_len(), bytes.len());
            assert_eq!(decode(&bytes).unwrap(), a);
        }
    }

    #[test]
    fn detects_truncation_and_corruption() {
        let bytes = encode(&array![1.0, 2.0, 3.0].into_dyn());
        assert!(decode(&bytes[..bytes.len() - 3])
            .unwrap_err()
            .contains("truncated"));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(decode(&bad).unwrap_err().contains("checksum"));
        assert!(decode(b"garbage").is_err());
    }
}
