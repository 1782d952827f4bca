//! Intake images: the face photo (JPEG) and fingerprint images, with format and size checks.

use crate::CardError;

/// The largest face photo the chip takes (DG2 is read over NFC; issued cards hold 10–30 KB).
pub const MAX_PHOTO_BYTES: usize = 64 * 1024;
/// The smallest face photo accepted (ICAO 9303 Part 3 recommends at least 240 × 320 for the portrait).
pub const MIN_PHOTO_WIDTH: u16 = 240;
pub const MIN_PHOTO_HEIGHT: u16 = 320;
/// The largest fingerprint image accepted.
pub const MAX_FINGERPRINT_BYTES: usize = 512 * 1024;

/// What a JPEG's frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u16,
    pub height: u16,
    pub components: u8,
}

/// Reads the frame header of a JPEG (baseline or progressive); an error names what is wrong.
pub fn jpeg_info(bytes: &[u8], field: &'static str) -> Result<JpegInfo, CardError> {
    let bad = |reason: String| CardError::Field { field, value: format!("{} bytes", bytes.len()), reason };
    if bytes.len() < 4 || bytes[0..2] != [0xFF, 0xD8] {
        return Err(bad("not a JPEG: it does not start with the JPEG marker FF D8".into()));
    }
    if !bytes.ends_with(&[0xFF, 0xD9]) {
        return Err(bad("not a complete JPEG: it does not end with FF D9".into()));
    }
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return Err(bad(format!("corrupt JPEG: no marker at byte {pos}")));
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let seg = bytes.get(pos + 4..pos + 2 + len).filter(|s| s.len() >= 6);
            let seg = seg.ok_or_else(|| bad("corrupt JPEG: truncated frame header".into()))?;
            let height = u16::from_be_bytes([seg[1], seg[2]]);
            let width = u16::from_be_bytes([seg[3], seg[4]]);
            return Ok(JpegInfo { width, height, components: seg[5] });
        }
        if marker == 0xDA {
            break;
        }
        pos += 2 + len;
    }
    Err(bad("corrupt JPEG: no frame header before the image data".into()))
}

/// Checks a face photo for the chip: JPEG, at most [`MAX_PHOTO_BYTES`], at least 240 × 320, colour or grey.
pub fn check_face_photo(bytes: &[u8]) -> Result<JpegInfo, CardError> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(CardError::Field {
            field: "photo",
            value: format!("{} bytes", bytes.len()),
            reason: format!("too large: the chip takes at most {MAX_PHOTO_BYTES} bytes"),
        });
    }
    let info = jpeg_info(bytes, "photo")?;
    if info.width < MIN_PHOTO_WIDTH || info.height < MIN_PHOTO_HEIGHT {
        return Err(CardError::Field {
            field: "photo",
            value: format!("{}x{}", info.width, info.height),
            reason: format!("too small: at least {MIN_PHOTO_WIDTH}x{MIN_PHOTO_HEIGHT} pixels"),
        });
    }
    Ok(info)
}

/// Checks a fingerprint image: JPEG (or JPEG 2000 would need a decoder we do not carry), at most 512 KiB.
pub fn check_fingerprint(bytes: &[u8]) -> Result<JpegInfo, CardError> {
    if bytes.len() > MAX_FINGERPRINT_BYTES {
        return Err(CardError::Field {
            field: "fingerprint",
            value: format!("{} bytes", bytes.len()),
            reason: format!("too large: at most {MAX_FINGERPRINT_BYTES} bytes"),
        });
    }
    jpeg_info(bytes, "fingerprint")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FACE: &[u8] = include_bytes!("../testdata/face.jpg");

    #[test]
    fn reads_the_frame_header() {
        let info = check_face_photo(FACE).unwrap();
        assert_eq!((info.width, info.height, info.components), (480, 640, 3));
    }

    #[test]
    fn rejects_what_is_not_a_usable_jpeg() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        let e = check_face_photo(png).unwrap_err().to_string();
        assert!(e.contains("photo") && e.contains("not a JPEG"), "{e}");
        let e = check_face_photo(&FACE[..FACE.len() - 10]).unwrap_err().to_string();
        assert!(e.contains("not a complete JPEG"), "{e}");
        let mut big = FACE.to_vec();
        big.splice(2..2, std::iter::repeat_n(0u8, MAX_PHOTO_BYTES));
        let e = check_face_photo(&big).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        assert!(check_face_photo(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }
}
