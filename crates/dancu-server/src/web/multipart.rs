//! `multipart/form-data` bodies (RFC 7578) as browsers send them: the file uploads of the intake
//! and card forms. Small on purpose: named parts, an optional file name, the bytes as sent.

use std::borrow::Cow;

use axum::http::{HeaderMap, header};

/// One part of a `multipart/form-data` body.
pub struct Part<'a> {
    pub name: String,
    /// The file's name as the browser sent it (a folder upload sends `folder/file`).
    pub filename: Option<String>,
    pub data: Cow<'a, [u8]>,
}

/// Parts per body at most (a chip folder has five files, the card form a dozen fields).
const MAX_PARTS: usize = 64;

/// The boundary of a `multipart/form-data` content type; `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// The parts of a request's body when its content type is `multipart/form-data`; `None` when it
/// is not one or the body is malformed (no boundary, truncated, more than 64 parts).
pub fn of_request<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Vec<Part<'a>>> {
    let b = headers.get(header::CONTENT_TYPE)?.to_str().ok().and_then(boundary)?;
    parts(body, &b)
}

/// A header parameter (`name="file"`) of a part's Content-Disposition.
fn param(disposition: &str, key: &str) -> Option<String> {
    disposition
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

/// Splits a `multipart/form-data` body into its parts; `None` when malformed.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let next = format!("\r\n--{boundary}");
    let finder = memchr::memmem::Finder::new(next.as_bytes());
    let mut at = memchr::memmem::find(body, delimiter.as_bytes())? + delimiter.len();
    let mut out = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Some(out);
        }
        if out.len() >= MAX_PARTS {
            return None;
        }
        let rest = rest.strip_prefix(b"\r\n")?;
        let head_end = memchr::memmem::find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let content = &rest[head_end + 4..];
        let end = finder.find(content)?;
        let disposition = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.trim().to_string())?;
        out.push(Part {
            name: param(&disposition, "name")?,
            filename: param(&disposition, "filename"),
            data: Cow::Borrowed(&content[..end]),
        });
        at = body.len() - content.len() + end + next.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_split_into_their_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nh1,h2\r\n1,2\r\n\r\n--XyZ--\r\n";
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let p = parts(body, &b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), &*p[0].data), ("csrf", &b"abc"[..]));
        assert_eq!(p[1].filename.as_deref(), Some("a.csv"));
        assert_eq!(&*p[1].data, b"h1,h2\r\n1,2\r\n");
        assert!(parts(b"--XyZ\r\nno headers end", "XyZ").is_none());
        assert!(boundary("application/x-www-form-urlencoded").is_none());
        assert!(boundary("multipart/form-data; boundary=").is_none());
        let many: Vec<u8> = (0..65)
            .flat_map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n").into_bytes())
            .chain(b"--B--\r\n".iter().copied())
            .collect();
        assert!(parts(&many, "B").is_none(), "more than 64 parts");
    }
}
