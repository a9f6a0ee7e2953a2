//! Names that become part of a file path on a Hyper-V host (a VM's folder, a disk's VHDX).
//!
//! Hyper-V accepts at most 100 characters in a VM name, and a name that reaches a path must be a
//! single plain Windows file-name component: no path separators or drive colons, none of
//! `* ? " < > |`, no control characters, not `.` or `..`, not ending with a dot or a space, and
//! not a reserved device name (`CON`, `NUL`, `COM1`, ...). The messages never repeat the name.

/// The longest VM name Hyper-V accepts.
pub const MAX_NAME_CHARS: usize = 100;

const FORBIDDEN: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];

const RESERVED: &[&str] = &["CON", "PRN", "AUX", "NUL"];

fn is_reserved(name: &str) -> bool {
    // Windows ignores anything from the first dot when matching device names (`nul.txt`).
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    if RESERVED.contains(&upper.as_str()) {
        return true;
    }
    let b = upper.as_bytes();
    b.len() == 4 && (upper.starts_with("COM") || upper.starts_with("LPT")) && b[3].is_ascii_digit()
}

/// Why `name` may not be used as a Hyper-V resource name that reaches a path, or `None` when it
/// may.
pub fn path_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        return Some("is empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Some("is longer than 100 characters");
    }
    if name.contains(FORBIDDEN) {
        return Some("may not contain any of \\ / : * ? \" < > |");
    }
    if name.chars().any(char::is_control) {
        return Some("may not contain control characters");
    }
    if name == "." || name == ".." {
        return Some("may not be . or ..");
    }
    if name.ends_with('.') || name.ends_with(' ') || name.starts_with(' ') {
        return Some("may not start with a space or end with a dot or a space");
    }
    if is_reserved(name) {
        return Some("is a reserved Windows device name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::path_name_problem;

    #[test]
    fn plain_names_pass() {
        for ok in ["web-01", "Web 01", "db.prod", "a_b", "x"] {
            assert_eq!(path_name_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn traversal_and_reserved_names_fail() {
        for bad in [
            "..\\..\\..\\Windows\\Temp\\evil",
            "../etc",
            "..",
            ".",
            "C:evil",
            "a/b",
            "nul",
            "COM1",
            "lpt9.txt",
            "name.",
            "name ",
            " name",
            "tab\there",
            "",
            &"x".repeat(101),
        ] {
            assert!(path_name_problem(bad).is_some(), "{bad:?} passed");
        }
    }
}
