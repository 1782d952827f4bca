//! A small PDF 1.7 writer for one-page documents (the residence confirmation): text in an
//! embedded TrueType font (DejaVu Sans, which has every Vietnamese letter) as a CID font with
//! Identity-H encoding, a ToUnicode map (so the text can be searched and copied), widths from
//! the font for measuring and wrapping, and filled rectangles (the QR code). Written here rather
//! than taken from a PDF crate: the document needs a few dozen lines of PDF, and the crates that
//! write PDF bring font shaping and image stacks this does not use.
//!
//! The whole font is embedded (deflated, ~400 KB): no subsetting yet.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence + public-domain changes; `data/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../../../data/DejaVuSans.ttf");

/// What the writer needs of a TrueType font: glyph ids by character, advance widths.
struct Font {
    units_per_em: u16,
    bbox: [i16; 4],
    ascent: i16,
    descent: i16,
    cmap: BTreeMap<char, u16>,
    advances: Vec<u16>,
    deflated: Vec<u8>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}
fn i16_at(b: &[u8], i: usize) -> Option<i16> {
    u16_at(b, i).map(|v| v as i16)
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?]))
}

impl Font {
    fn parse(b: &[u8]) -> Option<Font> {
        let n = u16_at(b, 4)? as usize;
        let mut tables = BTreeMap::new();
        for i in 0..n {
            let rec = 12 + 16 * i;
            let tag = b.get(rec..rec + 4)?;
            tables.insert(tag.to_vec(), (u32_at(b, rec + 8)? as usize, u32_at(b, rec + 12)? as usize));
        }
        let table = |t: &[u8]| tables.get(t).and_then(|&(o, l)| b.get(o..o + l));
        let head = table(b"head")?;
        let hhea = table(b"hhea")?;
        let hmtx = table(b"hmtx")?;
        let cmap = table(b"cmap")?;
        let units_per_em = u16_at(head, 18)?;
        let bbox = [i16_at(head, 36)?, i16_at(head, 38)?, i16_at(head, 40)?, i16_at(head, 42)?];
        let (ascent, descent) = (i16_at(hhea, 4)?, i16_at(hhea, 6)?);
        let metrics = u16_at(hhea, 34)? as usize;
        let advances = (0..metrics).map(|i| u16_at(hmtx, 4 * i)).collect::<Option<Vec<_>>>()?;
        // cmap: the Unicode BMP subtable in format 4 (platform 3 encoding 1, or platform 0).
        let mut sub = None;
        for i in 0..u16_at(cmap, 2)? as usize {
            let (platform, encoding) = (u16_at(cmap, 4 + 8 * i)?, u16_at(cmap, 6 + 8 * i)?);
            let off = u32_at(cmap, 8 + 8 * i)? as usize;
            if ((platform == 3 && encoding == 1) || platform == 0) && u16_at(cmap, off)? == 4 {
                sub = Some(cmap.get(off..)?);
                break;
            }
        }
        let s = sub?;
        let segs = u16_at(s, 6)? as usize / 2;
        let (ends, starts, deltas, ranges) = (14, 16 + 2 * segs, 16 + 4 * segs, 16 + 6 * segs);
        let mut map = BTreeMap::new();
        for i in 0..segs {
            let (end, start) = (u16_at(s, ends + 2 * i)?, u16_at(s, starts + 2 * i)?);
            let delta = u16_at(s, deltas + 2 * i)?;
            let range = u16_at(s, ranges + 2 * i)? as usize;
            if start == 0xFFFF {
                continue;
            }
            for c in start..=end {
                let gid = if range == 0 {
                    c.wrapping_add(delta)
                } else {
                    let at = ranges + 2 * i + range + 2 * (c - start) as usize;
                    match u16_at(s, at)? {
                        0 => 0,
                        g => g.wrapping_add(delta),
                    }
                };
                if let Some(ch) = char::from_u32(c.into())
                    && gid != 0
                {
                    map.insert(ch, gid);
                }
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b).ok()?;
        Some(Font { units_per_em, bbox, ascent, descent, cmap: map, advances, deflated: z.finish().ok()? })
    }

    fn glyph(&self, c: char) -> u16 {
        self.cmap.get(&c).copied().unwrap_or(0)
    }

    /// Advance width in 1/1000 em.
    fn advance(&self, gid: u16) -> u32 {
        let a = self.advances.get(gid as usize).or(self.advances.last()).copied().unwrap_or(0);
        u32::from(a) * 1000 / u32::from(self.units_per_em.max(1))
    }

    fn scale(&self, v: i16) -> i32 {
        i32::from(v) * 1000 / i32::from(self.units_per_em.max(1))
    }
}

fn font() -> Option<&'static Font> {
    static F: OnceLock<Option<Font>> = OnceLock::new();
    F.get_or_init(|| Font::parse(FONT)).as_ref()
}

/// Width of `text` at `size` points.
pub fn width(text: &str, size: f32) -> f32 {
    let Some(f) = font() else { return 0.0 };
    text.chars().map(|c| f.advance(f.glyph(c)) as f32).sum::<f32>() * size / 1000.0
}

/// Splits `text` into lines no wider than `max` points (at word boundaries; a longer word is
/// cut between characters).
pub fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if width(&candidate, size) <= max {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if width(&line, size) > max {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(c);
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// One A4 page being drawn (coordinates in points from the bottom left).
pub struct Page {
    content: String,
    used: BTreeSet<u16>,
    unicode: BTreeMap<u16, char>,
}

pub const A4: (f32, f32) = (595.28, 841.89);

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

impl Page {
    pub fn new() -> Page {
        Page { content: String::new(), used: BTreeSet::new(), unicode: BTreeMap::new() }
    }

    /// Text whose baseline starts at (x, y).
    pub fn text(&mut self, x: f32, y: f32, size: f32, text: &str) {
        let Some(f) = font() else { return };
        let mut hex = String::with_capacity(text.len() * 4);
        for c in text.chars() {
            let g = f.glyph(c);
            self.used.insert(g);
            self.unicode.entry(g).or_insert(c);
            hex += &format!("{g:04X}");
        }
        self.content += &format!("BT /F1 {size:.2} Tf {x:.2} {y:.2} Td <{hex}> Tj ET\n");
    }

    /// Text centred on x.
    pub fn centered(&mut self, x: f32, y: f32, size: f32, text: &str) {
        self.text(x - width(text, size) / 2.0, y, size, text);
    }

    /// A filled black rectangle.
    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32) {
        self.content += &format!("{x:.2} {y:.2} {w:.2} {h:.2} re f\n");
    }

    /// A stroked line.
    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        self.content += &format!("0.5 w {x1:.2} {y1:.2} m {x2:.2} {y2:.2} l S\n");
    }

    /// The finished PDF file.
    pub fn finish(self, title: &str) -> Option<Vec<u8>> {
        let f = font()?;
        let mut widths = String::new();
        for g in &self.used {
            widths += &format!("{g} [{}] ", f.advance(*g));
        }
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def /CMapType 2 def\n\
             1 begincodespacerange <0000> <FFFF> endcodespacerange\n",
        );
        let pairs: Vec<_> = self.unicode.iter().collect();
        for chunk in pairs.chunks(100) {
            cmap += &format!("{} beginbfchar\n", chunk.len());
            for (g, c) in chunk {
                let mut units = [0u16; 2];
                let hex: String = c.encode_utf16(&mut units).iter().map(|u| format!("{u:04X}")).collect();
                cmap += &format!("<{g:04X}> <{hex}>\n");
            }
            cmap += "endbfchar\n";
        }
        cmap += "endcmap CMapName currentdict /CMap defineresource pop end end\n";
        let title_utf16: String =
            std::iter::once(0xFEFFu16).chain(title.encode_utf16()).map(|u| format!("{u:04X}")).collect();

        let mut out: Vec<u8> = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        let mut obj = |out: &mut Vec<u8>, body: &[u8]| {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        };
        let stream = |dict: &str, data: &[u8]| {
            let mut v = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
            v.extend_from_slice(data);
            v.extend_from_slice(b"\nendstream");
            v
        };
        obj(&mut out, b"<< /Type /Catalog /Pages 2 0 R >>");
        obj(&mut out, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
        obj(
            &mut out,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {:.2} {:.2}] /Resources << /Font << /F1 5 0 R >> >> \
                 /Contents 4 0 R >>",
                A4.0, A4.1
            )
            .as_bytes(),
        );
        obj(&mut out, &stream("", self.content.as_bytes()));
        obj(
            &mut out,
            b"<< /Type /Font /Subtype /Type0 /BaseFont /DejaVuSans /Encoding /Identity-H \
              /DescendantFonts [6 0 R] /ToUnicode 9 0 R >>",
        );
        obj(
            &mut out,
            format!(
                "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /DejaVuSans \
                 /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
                 /FontDescriptor 7 0 R /CIDToGIDMap /Identity /DW 600 /W [{widths}] >>"
            )
            .as_bytes(),
        );
        obj(
            &mut out,
            format!(
                "<< /Type /FontDescriptor /FontName /DejaVuSans /Flags 32 /FontBBox [{} {} {} {}] /ItalicAngle 0 \
                 /Ascent {} /Descent {} /CapHeight {} /StemV 80 /FontFile2 8 0 R >>",
                f.scale(f.bbox[0]),
                f.scale(f.bbox[1]),
                f.scale(f.bbox[2]),
                f.scale(f.bbox[3]),
                f.scale(f.ascent),
                f.scale(f.descent),
                f.scale(f.ascent),
            )
            .as_bytes(),
        );
        obj(&mut out, &stream(&format!("/Filter /FlateDecode /Length1 {}", FONT.len()), &f.deflated));
        obj(&mut out, &stream("", cmap.as_bytes()));
        obj(&mut out, format!("<< /Title <{title_utf16}> /Producer (dancu) >>").as_bytes());
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes());
        for o in &offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R /Info 10 0 R >>\nstartxref\n{xref}\n%%EOF\n", offsets.len() + 1)
                .as_bytes(),
        );
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_has_every_vietnamese_letter() {
        let f = font().expect("the embedded font parses");
        let letters = "ẠẢÃÀÁÂẬẦẤẨẪĂẮẰẲẴẶĐÊỆỀẾỂỄÔỘỒỐỔỖƠỢỜỚỞỠƯỰỪỨỬỮỲÝỶỸỴÌÍỈĨỊÒÓỎÕỌÙÚỦŨỤÈÉẺẼẸ\
                       ạảãàáâậầấẩẫăắằẳẵặđêệềếểễôộồốổỗơợờớởỡưựừứửữỳýỷỹỵìíỉĩịòóỏõọùúủũụèéẻẽẹ";
        for c in letters.chars() {
            assert_ne!(f.glyph(c), 0, "no glyph for {c}");
        }
        assert!(width("Nguyễn", 10.0) > width("Ng", 10.0));
    }

    #[test]
    fn wrapping_keeps_every_character_within_the_width() {
        let text = "Số 8 Phố Đội Cấn, Phường Ba Đình, Thành phố Hà Nội ".repeat(5);
        let lines = wrap(&text, 10.0, 200.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| width(l, 10.0) <= 200.0));
        assert_eq!(lines.join(" ").split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>());
        let long = "A".repeat(300);
        assert_eq!(wrap(&long, 10.0, 100.0).concat(), long);
    }
}
