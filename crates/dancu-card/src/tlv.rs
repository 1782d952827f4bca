//! BER-TLV as the LDS uses it: one- or two-byte tags, definite lengths (DER length form).

use crate::CardError;

/// Appends the DER length form of `len` to `out`.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// One TLV: `tag` (1 or 2 bytes, as written, e.g. 0x61 or 0x5F1F) wrapping `value`.
pub fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    if tag > 0xFF {
        out.extend_from_slice(&tag.to_be_bytes());
    } else {
        out.push(tag as u8);
    }
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

/// Reads one TLV from the front of `input`: (tag, value, rest).
pub fn read<'a>(input: &'a [u8], what: &str) -> Result<(u16, &'a [u8], usize), CardError> {
    let bad = |why: &str| CardError::Format(format!("{what}: {why}"));
    let first = *input.first().ok_or_else(|| bad("empty where a tag was expected"))?;
    let (tag, mut pos) = if first & 0x1F == 0x1F {
        let second = *input.get(1).ok_or_else(|| bad("truncated two-byte tag"))?;
        if second & 0x80 != 0 {
            return Err(bad("tags longer than two bytes are not used in the LDS"));
        }
        (u16::from_be_bytes([first, second]), 2)
    } else {
        (u16::from(first), 1)
    };
    let l0 = *input.get(pos).ok_or_else(|| bad("truncated length"))?;
    pos += 1;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7F);
        if n == 0 || n > 4 {
            return Err(bad("unsupported length form"));
        }
        let bytes = input.get(pos..pos + n).ok_or_else(|| bad("truncated length"))?;
        pos += n;
        bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let value = input.get(pos..pos + len).ok_or_else(|| bad(&format!("length {len} runs past the end")))?;
    Ok((tag, value, pos + len))
}

/// Reads one TLV and checks its tag; returns (value, bytes consumed).
pub fn expect<'a>(input: &'a [u8], tag: u16, what: &str) -> Result<(&'a [u8], usize), CardError> {
    let (t, v, used) = read(input, what)?;
    if t != tag {
        return Err(CardError::Format(format!("{what}: tag {t:02X} where {tag:02X} was expected")));
    }
    Ok((v, used))
}

/// Every TLV in `input`, in order.
pub fn all<'a>(mut input: &'a [u8], what: &str) -> Result<Vec<(u16, &'a [u8])>, CardError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (t, v, used) = read(input, what)?;
        out.push((t, v));
        input = &input[used..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 200_000] {
            let value = vec![7u8; len];
            let t = tlv(0x5F2E, &value);
            let (tag, v, used) = read(&t, "test").unwrap();
            assert_eq!((tag, v.len(), used), (0x5F2E, len, t.len()));
        }
        assert!(read(&[0x61, 0x05, 1, 2], "x").is_err());
        assert!(read(&[0x61, 0x85, 1, 1, 1, 1, 1], "x").is_err());
        assert!(read(&[], "x").is_err());
    }
}
