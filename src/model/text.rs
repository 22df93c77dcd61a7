//! Text from guests and runtimes made safe to print.

/// A string from a guest or a runtime (a process name, an interface name)
/// as netctx prints it: control characters, backslashes and bytes that are
/// not UTF-8 written as `\xNN` (`\\`), so that it cannot hide, forge or
/// clear lines on a terminal.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// `escape_bytes` of a string.
pub fn escape(s: &str) -> String {
    escape_bytes(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_broken_utf8_are_escaped() {
        assert_eq!(escape("nginx"), "nginx");
        assert_eq!(escape("\x1b[8m"), "\\x1b[8m");
        assert_eq!(escape("x\r0 violation(s)\n"), "x\\x0d0 violation(s)\\x0a");
        assert_eq!(escape("a\\b"), "a\\\\b");
        assert_eq!(escape("\u{9b}2J"), "\\xc2\\x9b2J");
        assert_eq!(escape_bytes(b"\xffok\xc3"), "\\xffok\\xc3");
        assert_eq!(escape("café"), "café");
    }
}
