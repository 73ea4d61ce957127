//! Text that reaches a terminal: control characters escaped.
//!
//! Cursor names, target names and error messages can carry bytes another
//! process wrote into a segment; printed raw, an ANSI escape sequence among
//! them would drive the terminal. [`printable`] shows each control character
//! as a visible escape instead (`--json` output has its own escaping).

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character (C0, DEL, C1) written as `\xNN` or
/// `\u{NNNN}`, and each backslash doubled so the escapes stay unambiguous;
/// borrowed unchanged when there is nothing to escape.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escapes_control_characters_only() {
        assert_eq!(printable("billing-7"), "billing-7");
        assert_eq!(printable("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(printable("a\nb\tc\x7f\u{9b}"), "a\\x0ab\\x09c\\x7f\\x9b");
        assert_eq!(printable("é€ ok"), "é€ ok");
        assert_eq!(printable("C:\\x1b"), "C:\\\\x1b");
    }
}
