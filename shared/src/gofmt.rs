//! Text that must read exactly as Go prints it: `%q` quoting of strings and
//! string lists, and `os.ProcessState.String()` for the `Process-State` trailer.

use std::fmt::Write as _;

/// Quotes a string as Go's `strconv.Quote` does (for valid UTF-8 input; bytes
/// that are not UTF-8 come out as `\xNN`).
pub fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    if (c as u32) < 0x10000 {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    } else {
                        let _ = write!(out, "\\U{:08x}", c as u32);
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// Formats a list of strings as Go's `fmt.Sprintf("%q", []string{...})`:
/// `["a" "b"]`.
pub fn quote_list<S: AsRef<[u8]>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(s.as_ref()));
    }
    out.push(']');
    out
}

/// Go's name for a Linux signal number (`syscall.Signal.String()`).
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "hangup",
        "interrupt",
        "quit",
        "illegal instruction",
        "trace/breakpoint trap",
        "aborted",
        "bus error",
        "floating point exception",
        "killed",
        "user defined signal 1",
        "segmentation fault",
        "user defined signal 2",
        "broken pipe",
        "alarm clock",
        "terminated",
        "stack fault",
        "child exited",
        "continued",
        "stopped (signal)",
        "stopped",
        "stopped (tty input)",
        "stopped (tty output)",
        "urgent I/O condition",
        "CPU time limit exceeded",
        "file size limit exceeded",
        "virtual timer expired",
        "profiling timer expired",
        "window changed",
        "I/O possible",
        "power failure",
        "bad system call",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("signal {sig}"), |s| (*s).to_string())
}

/// Go's `ProcessState.String()` for a process that exited with `code` or was
/// killed by `signal`.
pub fn process_state(code: Option<i32>, signal: Option<i32>, core_dumped: bool) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => {
            let mut t = format!("signal: {}", signal_name(s));
            if core_dumped {
                t.push_str(" (core dumped)");
            }
            t
        }
        (None, None) => "exit status -1".to_string(),
    }
}

/// Go's text for an errno as its `syscall.Errno.Error()` prints it: the C
/// library's message with its first letter lowered.
pub fn errno_text(err: &std::io::Error) -> String {
    let full = err.to_string();
    // Rust appends " (os error N)" to the strerror text.
    let msg = full.split(" (os error").next().unwrap_or(&full);
    let mut chars = msg.chars();
    match chars.next() {
        Some(f) => f.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote(b"plain"), "\"plain\"");
        assert_eq!(quote(b"a\"b\\c\n\t"), "\"a\\\"b\\\\c\\n\\t\"");
        assert_eq!(quote(b"\x01\x7f"), "\"\\x01\\x7f\"");
        assert_eq!(quote("héllo".as_bytes()), "\"héllo\"");
        assert_eq!(quote(b"\xff"), "\"\\xff\"");
        assert_eq!(quote_list(&["a", "b c"]), "[\"a\" \"b c\"]");
        assert_eq!(quote_list::<&str>(&[]), "[]");
    }

    #[test]
    fn process_states() {
        assert_eq!(process_state(Some(1), None, false), "exit status 1");
        assert_eq!(process_state(None, Some(9), false), "signal: killed");
        assert_eq!(
            process_state(None, Some(11), true),
            "signal: segmentation fault (core dumped)"
        );
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn errno_is_lowercase() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(errno_text(&e), "no such file or directory");
    }
}
