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

/// The file stem of a new blank disk of VM `vm_name` created by the request whose idempotency
/// key (or, without one, correlation id) is `key`: `<vm>-disk-<12 hex of SHA-256(key)>`. The
/// same request always names the same file, and two requests never share one (the host agent
/// computes the same name).
pub fn disk_file_stem(vm_name: &str, key: &str) -> String {
    let digest = crate::bundle::sha256_hex(key.as_bytes());
    format!("{vm_name}-disk-{}", &digest[..12])
}

#[cfg(test)]
mod tests {
    use super::{disk_file_stem, path_name_problem};

    #[test]
    fn disk_stems_follow_the_request_key() {
        let a = disk_file_stem("web-01", "j1:disk.create:disk.create");
        assert_eq!(a, disk_file_stem("web-01", "j1:disk.create:disk.create"));
        assert_ne!(a, disk_file_stem("web-01", "j2:disk.create:disk.create"));
        assert!(a.starts_with("web-01-disk-") && a.len() == "web-01-disk-".len() + 12);
        // The agent computes the same: SHA-256 of "abc" starts ba7816bf8f01.
        assert_eq!(disk_file_stem("v", "abc"), "v-disk-ba7816bf8f01");
    }

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
