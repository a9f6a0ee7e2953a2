//! Host-name rules: RFC 1123 DNS names, and guest host names per OS family.
//!
//! A Windows computer name is one label of at most 15 characters (the NetBIOS limit), made of
//! letters, digits and hyphens, not starting or ending with a hyphen and not all digits. A Linux
//! host name is a DNS name of at most 64 characters in total (the kernel's `HOST_NAME_MAX`);
//! each dot-separated label follows the same character rules.

use crate::osfamily::OsFamily;

/// The longest Windows computer name.
pub const WINDOWS_MAX: usize = 15;
/// The longest Linux host name (`HOST_NAME_MAX`).
pub const LINUX_MAX: usize = 64;

fn label_ok(label: &str, max: usize) -> bool {
    !label.is_empty()
        && label.len() <= max
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `name` is an RFC 1123 host or domain name (labels of at most 63 characters, at most
/// 253 in total).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| label_ok(l, 63))
}

/// Why `name` is not a valid guest host name for `family`, or `None` when it is.
pub fn guest_host_name_problem(name: &str, family: OsFamily) -> Option<String> {
    match family {
        OsFamily::Windows => {
            if name.chars().count() > WINDOWS_MAX {
                Some(format!(
                    "a Windows computer name is at most {WINDOWS_MAX} characters (got {})",
                    name.chars().count()
                ))
            } else if !label_ok(name, WINDOWS_MAX) {
                Some(
                    "a Windows computer name may contain only letters, digits and hyphens, \
                     and may not start or end with a hyphen"
                        .to_owned(),
                )
            } else if name.chars().all(|c| c.is_ascii_digit()) {
                Some("a Windows computer name cannot be only digits".to_owned())
            } else {
                None
            }
        }
        OsFamily::Linux => {
            if name.len() > LINUX_MAX {
                Some(format!(
                    "a Linux host name is at most {LINUX_MAX} characters (got {})",
                    name.chars().count()
                ))
            } else if !name.split('.').all(|l| label_ok(l, LINUX_MAX)) {
                Some(
                    "a Linux host name may contain only letters, digits, hyphens and dots \
                     between labels, and no label may start or end with a hyphen"
                        .to_owned(),
                )
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("corp.example.com"));
        assert!(is_dns_name("CORP"));
        assert!(is_dns_name("a-b"));
        assert!(!is_dns_name("-ab"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("a_b"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name(""));
    }

    #[test]
    fn windows_names() {
        assert_eq!(guest_host_name_problem("web-01", OsFamily::Windows), None);
        assert_eq!(
            guest_host_name_problem(&"a".repeat(15), OsFamily::Windows),
            None
        );
        for bad in [
            &"a".repeat(16) as &str,
            "web.01",
            "web_01",
            "-web",
            "12345",
            "web 01",
        ] {
            assert!(
                guest_host_name_problem(bad, OsFamily::Windows).is_some(),
                "{bad}"
            );
        }
    }

    #[test]
    fn linux_names() {
        assert_eq!(
            guest_host_name_problem(&"a".repeat(64), OsFamily::Linux),
            None
        );
        assert_eq!(
            guest_host_name_problem("web01.lab.local", OsFamily::Linux),
            None
        );
        assert_eq!(guest_host_name_problem("12345", OsFamily::Linux), None);
        for bad in [&"a".repeat(65) as &str, "web_01", "web-", "a..b", "web 01"] {
            assert!(
                guest_host_name_problem(bad, OsFamily::Linux).is_some(),
                "{bad}"
            );
        }
    }
}
