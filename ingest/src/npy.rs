//! Just enough of the NumPy `.npy` format to read a 1-D array of integer photo ids.

/// Ids from a C-order 1-D array of little-endian i8/i4/u8/u4 (`<i8`, `<u8`, `<i4`, `<u4`).
pub fn read_ids(b: &[u8]) -> Result<Vec<u64>, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!(".npy version {v} is not supported")),
    };
    let data_start = start.checked_add(header_len).filter(|&e| e <= b.len()).ok_or(".npy header runs past the file")?;
    let header = std::str::from_utf8(&b[start..data_start]).map_err(|_| ".npy header is not text")?;
    let descr = dict_value(header, "descr").ok_or("no 'descr' in the .npy header")?;
    let width = match descr.trim_matches(['\'', '"']) {
        "<i8" | "<u8" => 8,
        "<i4" | "<u4" => 4,
        other => return Err(format!("dtype {other} is not a little-endian 32/64-bit integer")),
    };
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape = dict_value(header, "shape").ok_or("no 'shape' in the .npy header")?;
    let dims: Vec<&str> = shape.trim_matches(['(', ')']).split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let n: usize = match dims.as_slice() {
        [n] => n.parse().map_err(|_| format!("bad shape {shape}"))?,
        _ => return Err(format!("shape {shape} is not 1-D")),
    };
    let data = &b[data_start..];
    if data.len() < n.saturating_mul(width) {
        return Err(format!("{n} ids announced but the file holds {} bytes of data", data.len()));
    }
    Ok(data.chunks_exact(width).take(n).map(|c| if width == 8 {
        u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))
    } else {
        u32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as u64
    }).collect())
}

/// The text after `'key':` up to the next top-level comma (shape tuples keep their commas).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_numpy_written_int64_array() {
        // np.save(f, np.array([7, 1000675468], dtype='<i8'))
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let mut h = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }".to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&7i64.to_le_bytes());
        b.extend_from_slice(&1000675468i64.to_le_bytes());
        assert_eq!(super::read_ids(&b).unwrap(), vec![7, 1000675468]);
        assert!(super::read_ids(&b[..b.len() - 3]).is_err());
        assert!(super::read_ids(b"garbage").is_err());
    }
}
