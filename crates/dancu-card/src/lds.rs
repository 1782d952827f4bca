//! The chip's logical data structure (ICAO 9303 Part 10, LDS 1.7): EF.COM, DG1, DG2, DG13.

use crate::CardError;
use crate::photo::check_face_photo;
use crate::tlv::{self, tlv};

/// The data groups this card carries, with their file ids and tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataGroup {
    Dg1,
    Dg2,
    Dg13,
}

impl DataGroup {
    pub const ALL: [DataGroup; 3] = [DataGroup::Dg1, DataGroup::Dg2, DataGroup::Dg13];
    pub fn number(self) -> u8 {
        match self {
            DataGroup::Dg1 => 1,
            DataGroup::Dg2 => 2,
            DataGroup::Dg13 => 13,
        }
    }
    pub fn tag(self) -> u8 {
        match self {
            DataGroup::Dg1 => 0x61,
            DataGroup::Dg2 => 0x75,
            DataGroup::Dg13 => 0x6D,
        }
    }
    pub fn from_number(n: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.number() == n)
    }
    /// The file name used when a card's files are written to a directory (`dg1.bin`…).
    pub fn file_name(self) -> String {
        format!("dg{}.bin", self.number())
    }
}

/// EF.COM: LDS version 1.7, Unicode 4.0.0, the list of present data groups.
pub fn ef_com(groups: &[DataGroup]) -> Vec<u8> {
    let tags: Vec<u8> = groups.iter().map(|g| g.tag()).collect();
    let mut v = tlv(0x5F01, b"0107");
    v.extend(tlv(0x5F36, b"040000"));
    v.extend(tlv(0x5C, &tags));
    tlv(0x60, &v)
}

/// Reads EF.COM back: the data groups it lists.
pub fn parse_ef_com(bytes: &[u8]) -> Result<Vec<DataGroup>, CardError> {
    let (body, _) = tlv::expect(bytes, 0x60, "EF.COM")?;
    let mut out = Vec::new();
    for (tag, value) in tlv::all(body, "EF.COM")? {
        if tag == 0x5C {
            for t in value {
                let g = DataGroup::ALL.into_iter().find(|g| g.tag() == *t);
                out.push(g.ok_or_else(|| {
                    CardError::Format(format!("EF.COM lists tag {t:02X}, not a data group we carry"))
                })?);
            }
        }
    }
    Ok(out)
}

/// DG1: the 90 MRZ characters.
pub fn dg1(mrz: &[String; 3]) -> Vec<u8> {
    tlv(0x61, &tlv(0x5F1F, mrz.concat().as_bytes()))
}

/// Reads DG1 back to its 90 characters.
pub fn parse_dg1(bytes: &[u8]) -> Result<String, CardError> {
    let (body, _) = tlv::expect(bytes, 0x61, "DG1")?;
    let (mrz, _) = tlv::expect(body, 0x5F1F, "DG1 MRZ")?;
    String::from_utf8(mrz.to_vec()).map_err(|_| CardError::Format("DG1: the MRZ is not ASCII".into()))
}

/// Sex in the ISO/IEC 19794-5 face record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceGender {
    Unspecified = 0,
    Male = 1,
    Female = 2,
}

/// An ISO/IEC 19794-5:2005 face record holding one JPEG full-frontal image.
pub fn face_record(jpeg: &[u8], gender: FaceGender) -> Result<Vec<u8>, CardError> {
    let info = check_face_photo(jpeg)?;
    const HEADER: usize = 14;
    const INFO: usize = 20;
    const IMAGE_INFO: usize = 12;
    let block = INFO + IMAGE_INFO + jpeg.len();
    let total = HEADER + block;
    let mut r = Vec::with_capacity(total);
    r.extend_from_slice(b"FAC\x00010\x00");
    r.extend_from_slice(&(total as u32).to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes()); // one facial image
    // Facial information block.
    r.extend_from_slice(&(block as u32).to_be_bytes());
    r.extend_from_slice(&0u16.to_be_bytes()); // feature points
    r.push(gender as u8);
    r.push(0); // eye colour unspecified
    r.push(0); // hair colour unspecified
    r.extend_from_slice(&[0, 0, 0]); // property mask
    r.extend_from_slice(&[0, 0]); // expression unspecified
    r.extend_from_slice(&[0, 0, 0]); // pose angle
    r.extend_from_slice(&[0, 0, 0]); // pose angle uncertainty
    // Image information.
    r.push(1); // full frontal
    r.push(0); // JPEG
    r.extend_from_slice(&info.width.to_be_bytes());
    r.extend_from_slice(&info.height.to_be_bytes());
    r.push(if info.components == 1 { 3 } else { 1 }); // greyscale or 24-bit RGB
    r.push(2); // static photo, unknown source
    r.extend_from_slice(&[0, 0]); // device type
    r.extend_from_slice(&[0, 0]); // quality
    r.extend_from_slice(jpeg);
    debug_assert_eq!(r.len(), total);
    Ok(r)
}

/// DG2: the biometric information group template with one face.
pub fn dg2(jpeg: &[u8], gender: FaceGender) -> Result<Vec<u8>, CardError> {
    let record = face_record(jpeg, gender)?;
    let mut header = tlv(0x80, &[0x01, 0x01]); // ICAO header version
    header.extend(tlv(0x81, &[0x02])); // biometric type: face
    header.extend(tlv(0x87, &[0x01, 0x01])); // format owner: ISO/IEC JTC 1/SC 37
    header.extend(tlv(0x88, &[0x00, 0x08])); // format type: face image
    let mut bit = tlv(0xA1, &header);
    bit.extend(tlv(0x5F2E, &record));
    let mut group = tlv(0x02, &[0x01]);
    group.extend(tlv(0x7F60, &bit));
    Ok(tlv(0x75, &tlv(0x7F61, &group)))
}

/// Reads DG2 back to the JPEG it holds.
pub fn parse_dg2(bytes: &[u8]) -> Result<Vec<u8>, CardError> {
    let (body, _) = tlv::expect(bytes, 0x75, "DG2")?;
    let (group, _) = tlv::expect(body, 0x7F61, "DG2 group template")?;
    let items = tlv::all(group, "DG2 group template")?;
    let bit = items
        .iter()
        .find(|(t, _)| *t == 0x7F60)
        .ok_or_else(|| CardError::Format("DG2: no biometric information template".into()))?
        .1;
    let record = tlv::all(bit, "DG2 template")?
        .into_iter()
        .find(|(t, _)| *t == 0x5F2E)
        .ok_or_else(|| CardError::Format("DG2: no biometric data block".into()))?
        .1;
    if record.len() < 46 || &record[0..8] != b"FAC\x00010\x00" {
        return Err(CardError::Format("DG2: not an ISO/IEC 19794-5 face record".into()));
    }
    Ok(record[46..].to_vec())
}
