//! DG13: the Vietnamese personal details on the chip, as public readers of issued cards parse
//! them: `6D { 30 { 02 01 01, 06 <OID>, 31 { 30 { 02 01 n, value } … } } }`.
//!
//! Each field is a SEQUENCE of its number and a UTF8String; an absent field is left out, never
//! written empty. Field 13 is a SEQUENCE { father, mother } (a parent who is not recorded is an
//! empty string in its position; the field is left out when neither is), field 14 a
//! SEQUENCE { spouse }. Fields are written in number order. The structure's OID is not public:
//! dancu writes a UUID-derived OID (ITU-T X.667, arc 2.25) and its decoder accepts any OID,
//! since readers key on the field numbers.

use crate::CardError;
use crate::tlv::{self, tlv};

/// DER contents of OID 2.25.135419188386543921864382323410481378714 (dancu's DG13 structure).
pub const OID_DER: [u8; 20] = [
    0x69, 0x81, 0xCB, 0xE0, 0xE4, 0xDE, 0x91, 0xEF, 0xBA, 0x82, 0xE7, 0x81, 0xC3, 0xAD, 0xE0, 0xBE, 0xE9, 0xBB, 0xEB,
    0x1A,
];

/// Text printed in field 12 for a card that does not expire.
pub const NO_EXPIRY: &str = "Không thời hạn";

/// The fields of DG13, as text (dates `dd/MM/yyyy`, or `yyyy` / `MM/yyyy` for partial birth dates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dg13 {
    /// 1 Số định danh cá nhân.
    pub personal_id: String,
    /// 2 Họ, chữ đệm và tên khai sinh (with diacritics).
    pub full_name: String,
    /// 3 Ngày sinh.
    pub birth_date: String,
    /// 4 Giới tính: `Nam` / `Nữ`.
    pub sex: String,
    /// 5 Quốc tịch.
    pub nationality: String,
    /// 6 Dân tộc.
    pub ethnicity: Option<String>,
    /// 7 Tôn giáo.
    pub religion: Option<String>,
    /// 8 Quê quán.
    pub hometown: Option<String>,
    /// 9 Nơi cư trú.
    pub residence: Option<String>,
    /// 10 Đặc điểm nhận dạng.
    pub identifying_features: Option<String>,
    /// 11 Ngày cấp.
    pub issue_date: String,
    /// 12 Có giá trị đến (or [`NO_EXPIRY`]).
    pub expiry_date: String,
    /// 13 Họ tên cha.
    pub father: Option<String>,
    /// 13 Họ tên mẹ.
    pub mother: Option<String>,
    /// 14 Họ tên vợ/chồng.
    pub spouse: Option<String>,
    /// 15 Số CMND cũ.
    pub legacy_id: Option<String>,
    /// 16 Card (chip) serial.
    pub card_serial: Option<String>,
}

fn field(n: u8, value: &[u8]) -> Vec<u8> {
    let mut v = tlv(0x02, &[n]);
    v.extend_from_slice(value);
    tlv(0x30, &v)
}

fn text(s: &str) -> Vec<u8> {
    tlv(0x0C, s.as_bytes())
}

impl Dg13 {
    /// The DG13 file.
    pub fn encode(&self) -> Vec<u8> {
        let mut set = Vec::with_capacity(512);
        let mut put = |n: u8, v: Option<&str>| {
            if let Some(v) = v {
                set.extend(field(n, &text(v)));
            }
        };
        put(1, Some(&self.personal_id));
        put(2, Some(&self.full_name));
        put(3, Some(&self.birth_date));
        put(4, Some(&self.sex));
        put(5, Some(&self.nationality));
        put(6, self.ethnicity.as_deref());
        put(7, self.religion.as_deref());
        put(8, self.hometown.as_deref());
        put(9, self.residence.as_deref());
        put(10, self.identifying_features.as_deref());
        put(11, Some(&self.issue_date));
        put(12, Some(&self.expiry_date));
        if self.father.is_some() || self.mother.is_some() {
            let mut parents = text(self.father.as_deref().unwrap_or(""));
            parents.extend(text(self.mother.as_deref().unwrap_or("")));
            set.extend(field(13, &tlv(0x30, &parents)));
        }
        if let Some(s) = &self.spouse {
            set.extend(field(14, &tlv(0x30, &text(s))));
        }
        if let Some(v) = &self.legacy_id {
            set.extend(field(15, &text(v)));
        }
        if let Some(v) = &self.card_serial {
            set.extend(field(16, &text(v)));
        }
        let mut body = tlv(0x02, &[0x01]);
        body.extend(tlv(0x06, &OID_DER));
        body.extend(tlv(0x31, &set));
        tlv(0x6D, &tlv(0x30, &body))
    }

    /// Reads a DG13 file. Unknown field numbers are skipped (later profiles add fields);
    /// a repeated field, a missing mandatory one or a value that is not text is an error.
    pub fn decode(bytes: &[u8]) -> Result<Dg13, CardError> {
        let (outer, _) = tlv::expect(bytes, 0x6D, "DG13")?;
        let (body, _) = tlv::expect(outer, 0x30, "DG13 body")?;
        let items = tlv::all(body, "DG13 body")?;
        let set =
            items.iter().find(|(t, _)| *t == 0x31).ok_or_else(|| CardError::Format("DG13: no field set".into()))?.1;
        let mut seen = [false; 17];
        let mut out = Dg13::default();
        for (t, f) in tlv::all(set, "DG13 fields")? {
            if t != 0x30 {
                return Err(CardError::Format(format!("DG13: a field with tag {t:02X}, not a SEQUENCE")));
            }
            let (num, used) = tlv::expect(f, 0x02, "DG13 field number")?;
            let n = match num {
                [n] => *n,
                _ => return Err(CardError::Format("DG13: a field number longer than one byte".into())),
            };
            let rest = &f[used..];
            if usize::from(n) < seen.len() {
                if seen[usize::from(n)] {
                    return Err(CardError::Format(format!("DG13: field {n} appears twice")));
                }
                seen[usize::from(n)] = true;
            }
            let one = |v: &[u8]| -> Result<String, CardError> {
                let (tag, value, _) = tlv::read(v, "DG13 value")?;
                if tag != 0x0C && tag != 0x13 {
                    return Err(CardError::Format(format!("DG13: field {n} is tag {tag:02X}, not text")));
                }
                String::from_utf8(value.to_vec())
                    .map_err(|_| CardError::Format(format!("DG13: field {n} is not UTF-8")))
            };
            let seq = |v: &[u8]| -> Result<Vec<String>, CardError> {
                let (inner, _) = tlv::expect(v, 0x30, "DG13 name list")?;
                tlv::all(inner, "DG13 name list")?
                    .into_iter()
                    .map(|(tag, value)| {
                        if tag != 0x0C && tag != 0x13 {
                            return Err(CardError::Format(format!("DG13: field {n} holds tag {tag:02X}, not text")));
                        }
                        String::from_utf8(value.to_vec())
                            .map_err(|_| CardError::Format(format!("DG13: field {n} is not UTF-8")))
                    })
                    .collect()
            };
            let nonempty = |s: String| if s.is_empty() { None } else { Some(s) };
            match n {
                1 => out.personal_id = one(rest)?,
                2 => out.full_name = one(rest)?,
                3 => out.birth_date = one(rest)?,
                4 => out.sex = one(rest)?,
                5 => out.nationality = one(rest)?,
                6 => out.ethnicity = Some(one(rest)?),
                7 => out.religion = Some(one(rest)?),
                8 => out.hometown = Some(one(rest)?),
                9 => out.residence = Some(one(rest)?),
                10 => out.identifying_features = Some(one(rest)?),
                11 => out.issue_date = one(rest)?,
                12 => out.expiry_date = one(rest)?,
                13 => {
                    let mut names = seq(rest)?.into_iter();
                    out.father = names.next().and_then(nonempty);
                    out.mother = names.next().and_then(nonempty);
                }
                14 => out.spouse = seq(rest)?.into_iter().next().and_then(nonempty),
                15 => out.legacy_id = Some(one(rest)?),
                16 => out.card_serial = Some(one(rest)?),
                _ => {}
            }
        }
        for (n, name) in [
            (1, "personal ID"),
            (2, "full name"),
            (3, "birth date"),
            (4, "sex"),
            (5, "nationality"),
            (11, "issue date"),
            (12, "expiry date"),
        ] {
            if !seen[n] {
                return Err(CardError::Format(format!("DG13: mandatory field {n} ({name}) is missing")));
            }
        }
        Ok(out)
    }

    /// A readable rendering, Vietnamese with English, one field a line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, v: Option<&str>| {
            if let Some(v) = v {
                out.push_str(&format!("{label:<48} {v}\n"));
            }
        };
        line("Số định danh cá nhân / Personal ID:", Some(&self.personal_id));
        line("Họ, chữ đệm và tên / Full name:", Some(&self.full_name));
        line("Ngày sinh / Date of birth:", Some(&self.birth_date));
        line("Giới tính / Sex:", Some(&self.sex));
        line("Quốc tịch / Nationality:", Some(&self.nationality));
        line("Dân tộc / Ethnicity:", self.ethnicity.as_deref());
        line("Tôn giáo / Religion:", self.religion.as_deref());
        line("Quê quán / Hometown:", self.hometown.as_deref());
        line("Nơi cư trú / Place of residence:", self.residence.as_deref());
        line("Đặc điểm nhận dạng / Identifying features:", self.identifying_features.as_deref());
        line("Ngày cấp / Date of issue:", Some(&self.issue_date));
        line("Có giá trị đến / Date of expiry:", Some(&self.expiry_date));
        line("Họ tên cha / Father:", self.father.as_deref());
        line("Họ tên mẹ / Mother:", self.mother.as_deref());
        line("Họ tên vợ/chồng / Spouse:", self.spouse.as_deref());
        line("Số CMND cũ / Former ID number:", self.legacy_id.as_deref());
        line("Số thẻ / Card serial:", self.card_serial.as_deref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every Vietnamese vowel with every tone, both cases, plus đ/Đ.
    const VIETNAMESE: &str = "aàáảãạăằắẳẵặâầấẩẫậeèéẻẽẹêềếểễệiìíỉĩịoòóỏõọôồốổỗộơờớởỡợuùúủũụưừứửữựyỳýỷỹỵđ\
        AÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬEÈÉẺẼẸÊỀẾỂỄỆIÌÍỈĨỊOÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢUÙÚỦŨỤƯỪỨỬỮỰYỲÝỶỸỴĐbcdghklmnpqrstvx";

    fn word() -> impl Strategy<Value = String> {
        let chars: Vec<char> = VIETNAMESE.chars().collect();
        proptest::collection::vec(proptest::sample::select(chars), 1..9).prop_map(|v| v.into_iter().collect())
    }
    fn words(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(word(), 1..max).prop_map(|w| w.join(" "))
    }
    fn opt(max: usize) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(words(max))
    }

    prop_compose! {
        fn dg13()(
            id in "[0-9]{12}", name in words(6), birth in prop_oneof!["[0-3][0-9]/[01][0-9]/(19|20)[0-9]{2}", "(19|20)[0-9]{2}"],
            male in any::<bool>(), ethnicity in opt(3), religion in opt(4), hometown in opt(12),
            residence in opt(60), features in opt(10), issue in "[0-3][0-9]/[01][0-9]/20[0-9]{2}",
            expiry in prop_oneof!["[0-3][0-9]/[01][0-9]/20[0-9]{2}", Just(NO_EXPIRY.to_string())],
            father in opt(5), mother in opt(5), spouse in opt(5), legacy in proptest::option::of("[0-9]{9}"),
            serial in proptest::option::of("[0-9A-F]{16}"),
        ) -> Dg13 {
            Dg13 {
                personal_id: id, full_name: name, birth_date: birth, sex: if male { "Nam" } else { "Nữ" }.into(),
                nationality: "Việt Nam".into(), ethnicity, religion, hometown, residence, identifying_features: features,
                issue_date: issue, expiry_date: expiry, father, mother, spouse, legacy_id: legacy, card_serial: serial,
            }
        }
    }

    proptest! {
        #[test]
        fn the_decoder_reads_back_what_the_encoder_wrote(d in dg13()) {
            let bytes = d.encode();
            prop_assert_eq!(Dg13::decode(&bytes).unwrap(), d);
        }

        #[test]
        fn truncated_or_garbled_input_is_an_error_not_a_panic(d in dg13(), cut in 0usize..4000, flip in 0usize..4000) {
            let bytes = d.encode();
            let _ = Dg13::decode(&bytes[..cut.min(bytes.len())]);
            let mut b = bytes.clone();
            let i = flip % b.len();
            b[i] ^= 0x5A;
            let _ = Dg13::decode(&b);
        }
    }

    #[test]
    fn layout_matches_public_readers() {
        let d = Dg13 {
            personal_id: "001093047064".into(),
            full_name: "Ưng Hoàng Hiệp".into(),
            birth_date: "05/01/1993".into(),
            sex: "Nam".into(),
            nationality: "Việt Nam".into(),
            issue_date: "01/04/2021".into(),
            expiry_date: "05/01/2033".into(),
            ..Dg13::default()
        };
        let b = d.encode();
        assert_eq!(b[0], 0x6D);
        // The first field as readers look for it: 30 len 02 01 01 0C 0C "001093047064".
        let first = b.windows(5).position(|w| w == [0x02, 0x01, 0x01, 0x0C, 0x0C]).unwrap();
        assert_eq!(&b[first + 5..first + 17], b"001093047064");
        let mut missing = b.clone();
        let pos = missing.windows(3).position(|w| w == [0x02, 0x01, 0x0B]).unwrap();
        missing[pos + 2] = 0x1B; // field 11 becomes an unknown 27
        let e = Dg13::decode(&missing).unwrap_err().to_string();
        assert!(e.contains("field 11"), "{e}");
    }
}
