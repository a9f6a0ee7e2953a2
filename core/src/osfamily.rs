//! Guest operating-system family and its inference from an image name.
//!
//! The OS family decides which guest fields apply (domain join is Windows-only, Ansible is
//! Linux-only), which host-name rules hold, and which firmware template the worker picks. The
//! authoritative source is the image catalogue (an explicit `os_family` per image); this module
//! holds the fallback: [`infer_from_image_name`].
//!
//! Inference is by **word prefix**, never by substring. The name is split into alphanumeric
//! tokens (and CamelCase tokens are also split at lower→upper case changes), and a token must
//! *start with* a known distribution prefix (`ubuntu`, `rhel9`, `AlmaLinux` …). A few short or
//! ambiguous names (`arch`, `mint`, `kali`, `sle`) must be the whole token, optionally followed by
//! a version number (`arch`, `mint21`), so that `Research`, `Archive` or `Minted` stay Windows.
//! The first token that names a family decides; no match, or a blank name, means Windows
//! (Hyper-V's home turf, and the upstream default).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The guest operating-system family.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// Microsoft Windows (the default when nothing says otherwise).
    #[default]
    Windows,
    /// Any Linux distribution.
    Linux,
}

impl OsFamily {
    /// Both families, in declaration order.
    pub const ALL: [OsFamily; 2] = [OsFamily::Windows, OsFamily::Linux];

    /// The wire name: `windows` or `linux`.
    pub fn as_str(self) -> &'static str {
        match self {
            OsFamily::Windows => "windows",
            OsFamily::Linux => "linux",
        }
    }

    /// Parses `windows` / `linux`, case-insensitively and ignoring surrounding whitespace.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        OsFamily::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token starting with one of these names a Linux distribution.
pub const LINUX_PREFIXES: &[&str] = &[
    "linux",
    "ubuntu",
    "kubuntu",
    "xubuntu",
    "lubuntu",
    "debian",
    "rhel",
    "redhat",
    "centos",
    "fedora",
    "suse",
    "opensuse",
    "sles",
    "rocky",
    "alma",
    "oraclelinux",
    "amazonlinux",
    "amzn",
    "alpine",
    "archlinux",
    "linuxmint",
    "kalilinux",
    "manjaro",
    "gentoo",
    "nixos",
    "coreos",
    "flatcar",
    "clearlinux",
    "photonos",
    "openeuler",
];

/// These name a Linux distribution only as a whole token, optionally followed by digits
/// (`arch`, `mint21`), because as prefixes they start ordinary words (`Research` has no token
/// starting with `arch`, but `Archive` does).
pub const LINUX_WORDS: &[&str] = &["arch", "mint", "kali", "sle", "ol"];

/// A token starting with one of these names Windows explicitly (`Win2022`, `windows-server`).
pub const WINDOWS_PREFIXES: &[&str] = &["windows", "winsrv", "winserver"];

/// These name Windows as a whole token, optionally followed by digits (`win`, `Win2022`, `w2k19`).
pub const WINDOWS_WORDS: &[&str] = &["win", "w2k", "ws"];

/// Infers the OS family of an image from its name (see the module docs for the rules).
/// Blank names are Windows.
pub fn infer_from_image_name(name: &str) -> OsFamily {
    tokens(name)
        .find_map(|t| classify_token(&t))
        .unwrap_or(OsFamily::Windows)
}

/// Like [`infer_from_image_name`], for an optional name (`None` is Windows).
pub fn infer_from_optional(name: Option<&str>) -> OsFamily {
    name.map_or(OsFamily::Windows, infer_from_image_name)
}

fn classify_token(token: &str) -> Option<OsFamily> {
    if matches_family(token, WINDOWS_PREFIXES, WINDOWS_WORDS) {
        Some(OsFamily::Windows)
    } else if matches_family(token, LINUX_PREFIXES, LINUX_WORDS) {
        Some(OsFamily::Linux)
    } else {
        None
    }
}

fn matches_family(token: &str, prefixes: &[&str], words: &[&str]) -> bool {
    prefixes.iter().any(|p| token.starts_with(p))
        || words.iter().any(|w| {
            token
                .strip_prefix(w)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
        })
}

/// Lower-cased tokens of `name`: every alphanumeric run, followed by its CamelCase parts when it
/// has more than one (`AlmaLinux` → `almalinux`, `alma`, `linux`).
fn tokens(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|run| !run.is_empty())
        .flat_map(|run| {
            let parts = camel_parts(run);
            let mut out = vec![run.to_lowercase()];
            if parts.len() > 1 {
                out.extend(parts.into_iter().map(|p| p.to_lowercase()));
            }
            out
        })
}

fn camel_parts(run: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut prev_lower = false;
    for (i, c) in run.char_indices() {
        if c.is_uppercase() && prev_lower {
            parts.push(&run[start..i]);
            start = i;
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    parts.push(&run[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_cases_infer_as_upstream_tests_expect() {
        for name in [
            "Windows Server 2022",
            "Win2022",
            "win-server-2016",
            "",
            "   ",
        ] {
            assert_eq!(infer_from_image_name(name), OsFamily::Windows, "{name:?}");
        }
        for name in [
            "Ubuntu 22.04",
            "RedHat-8",
            "CentOS Stream 9",
            "AlmaLinux 9",
            "generic-linux-image",
            "UBUNTU 22.04",
        ] {
            assert_eq!(infer_from_image_name(name), OsFamily::Linux, "{name:?}");
        }
        assert_eq!(infer_from_optional(None), OsFamily::Windows);
    }

    #[test]
    fn ordinary_words_containing_distro_names_stay_windows() {
        for name in [
            "Research",
            "Archive-2019",
            "Minted Server",
            "Kalimba",
            "Solar Panels",
            "Oracle DB 19c",
            "Amazonian",
            "Parchment",
            "Old-image",
            "Sleep",
            "Helpers",
        ] {
            assert_eq!(infer_from_image_name(name), OsFamily::Windows, "{name:?}");
        }
    }

    #[test]
    fn whole_word_distros_match_with_optional_version() {
        for name in [
            "Arch",
            "arch-2024.01",
            "Linux Mint 21",
            "mint21",
            "Kali 2024",
            "SLE 15 SP5",
            "OL8",
            "rhel9",
            "sles15-sp4",
            "Rocky-9.3",
            "OracleLinux-8",
            "amzn2",
            "ArchLinux",
            "openSUSE Leap 15",
            "debian12-cloud",
        ] {
            assert_eq!(infer_from_image_name(name), OsFamily::Linux, "{name:?}");
        }
    }

    #[test]
    fn first_family_token_decides() {
        assert_eq!(
            infer_from_image_name("Windows with Linux tools"),
            OsFamily::Windows
        );
        assert_eq!(
            infer_from_image_name("Ubuntu for Windows admins"),
            OsFamily::Linux
        );
    }

    #[test]
    fn parse_and_serde_are_lowercase() {
        assert_eq!(OsFamily::parse(" LINUX "), Some(OsFamily::Linux));
        assert_eq!(OsFamily::parse("Windows"), Some(OsFamily::Windows));
        assert_eq!(OsFamily::parse("macos"), None);
        assert_eq!(
            serde_json::to_string(&OsFamily::Linux).ok().as_deref(),
            Some("\"linux\"")
        );
        assert_eq!(OsFamily::default(), OsFamily::Windows);
    }
}
