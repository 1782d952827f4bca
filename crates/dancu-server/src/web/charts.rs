//! Charts drawn on the server as SVG (no chart library, no script): the age pyramid and a
//! horizontal bar chart. Text inside is escaped.

use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An age pyramid: one row per age band (youngest at the bottom), men to the left, women to
/// the right. `bands`: (label, men, women), youngest first.
pub fn pyramid(title: &str, bands: &[(String, u64, u64)], male: &str, female: &str) -> String {
    let row = 16.0;
    let (w, label_w, top) = (600.0, 60.0, 24.0);
    let h = top + row * bands.len() as f64 + 24.0;
    let half = (w - label_w) / 2.0;
    let max = bands.iter().map(|(_, m, f)| (*m).max(*f)).max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="14" text-anchor="end">{}</text><text x="{}" y="14">{}</text>"#,
        half - 4.0,
        esc(male),
        half + label_w + 4.0,
        esc(female)
    );
    for (i, (label, m, f)) in bands.iter().rev().enumerate() {
        let y = top + row * i as f64;
        let mw = *m as f64 / max * (half - 8.0);
        let fw = *f as f64 / max * (half - 8.0);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{y}" width="{mw:.1}" height="{}" fill="#2f6fab"><title>{} {}: {m}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><rect x="{:.1}" y="{y}" width="{fw:.1}" height="{}" fill="#b04a6f"><title>{} {}: {f}</title></rect>"##,
            half - mw,
            row - 2.0,
            esc(male),
            esc(label),
            half + label_w / 2.0,
            y + row - 4.0,
            esc(label),
            half + label_w,
            row - 2.0,
            esc(female),
            esc(label),
        );
    }
    let _ = write!(
        s,
        r#"<text x="0" y="{:.1}">{}</text><text x="{w}" y="{:.1}" text-anchor="end">{}</text></svg>"#,
        h - 6.0,
        max as u64,
        h - 6.0,
        max as u64
    );
    s
}

/// Horizontal bars, one per (label, value), in the given order.
pub fn bars(title: &str, items: &[(String, u64)]) -> String {
    let row = 20.0;
    let (w, label_w) = (600.0, 190.0);
    let h = row * items.len() as f64 + 8.0;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let bw = *v as f64 / max * (w - label_w - 70.0);
        let short: String = label.chars().take(28).collect();
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{}" fill="#0b5394"/><text x="{:.1}" y="{:.1}">{v}</text>"##,
            label_w - 6.0,
            y + row - 7.0,
            esc(&short),
            row - 4.0,
            label_w + bw + 4.0,
            y + row - 7.0,
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_scale_to_the_largest() {
        let p = pyramid("A<b", &[("0-4".into(), 10, 5), ("5-9".into(), 0, 20)], "Nam", "Nữ");
        assert!(p.contains("A&lt;b") && !p.contains("A<b"));
        assert!(p.starts_with("<svg") && p.ends_with("</svg>"));
        // the largest band (20 women) fills its half: (600 - 60) / 2 - 8 = 262
        assert!(p.contains(r#"width="262.0""#), "{p}");
        let b = bars("x", &[("Hà Nội".into(), 3), ("<x>".into(), 6)]);
        assert!(b.contains("&lt;x&gt;") && b.contains(">6</text>"));
        assert_eq!(b.matches("<rect").count(), 2);
    }
}
