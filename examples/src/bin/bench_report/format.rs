//! How numbers read in the report and on the charts.

/// A value with as many digits as it needs: `412,345`, `1,234`, `123`,
/// `12.3`, `1.23`, `0.0123`; `n/a` for NaN and infinities.
///
/// ```ignore
/// assert_eq!(number(412_345.4), "412,345");
/// assert_eq!(number(12.34), "12.3");
/// ```
pub(crate) fn number(n: f64) -> String {
    if !n.is_finite() {
        return "n/a".into();
    }
    let abs = n.abs();
    if abs >= 1000.0 {
        let digits = format!("{abs:.0}");
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0.0 { format!("-{out}") } else { out }
    } else if abs >= 100.0 || abs == 0.0 {
        format!("{n:.0}")
    } else if abs >= 10.0 {
        format!("{n:.1}")
    } else if abs >= 1.0 {
        format!("{n:.2}")
    } else {
        format!("{n:.3}")
    }
}

/// A ratio to two decimals: `0.46`.
pub(crate) fn ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "n/a".into()
    }
}

/// Text for a Markdown table cell: `|` escaped, line breaks as spaces.
pub(crate) fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(412_345.4), "412,345");
        assert_eq!(number(-1_234.0), "-1,234");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(ratio(0.4615), "0.46");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
