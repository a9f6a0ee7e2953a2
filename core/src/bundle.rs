//! The host agent bundle: the `Powershell/` scripts embedded at build time, their version and a
//! SHA-256 per file, and the manifest (`manifest.json`) installed next to them on every host.
//!
//! [`Bundle::assess`] compares what a host reports (its installed manifest and the hashes of
//! its files) with a bundle and decides whether the host is current, stale, corrupt or empty,
//! and which files must be written. [`script`] holds the PowerShell deployment scripts that
//! read and change a host's installation; the worker sends them, the simulator executes them.
//!
//! Pure: no I/O. The scripts are plain text; running them is the caller's business.

pub mod script;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Name of the manifest file in the install directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the version file (part of the bundle).
pub const VERSION_FILE: &str = "version";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// The files of `Powershell/`, embedded at build time. Every `.ps1` here is pure ASCII so that
/// Windows PowerShell 5.1 reads it the same whatever the host's code page.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "Invoke-AethervAgent.ps1",
        include_str!("../../Powershell/Invoke-AethervAgent.ps1"),
    ),
    (
        "AethervAgent.Common.ps1",
        include_str!("../../Powershell/AethervAgent.Common.ps1"),
    ),
    (
        "AethervAgent.Journal.ps1",
        include_str!("../../Powershell/AethervAgent.Journal.ps1"),
    ),
    (
        "AethervAgent.Inventory.ps1",
        include_str!("../../Powershell/AethervAgent.Inventory.ps1"),
    ),
    (
        "AethervAgent.Vm.ps1",
        include_str!("../../Powershell/AethervAgent.Vm.ps1"),
    ),
    (
        "AethervAgent.Disk.ps1",
        include_str!("../../Powershell/AethervAgent.Disk.ps1"),
    ),
    (
        "AethervAgent.Nic.ps1",
        include_str!("../../Powershell/AethervAgent.Nic.ps1"),
    ),
    (
        "AethervAgent.Kvp.ps1",
        include_str!("../../Powershell/AethervAgent.Kvp.ps1"),
    ),
    (
        "AethervAgent.Cluster.ps1",
        include_str!("../../Powershell/AethervAgent.Cluster.ps1"),
    ),
    (VERSION_FILE, include_str!("../../Powershell/version")),
];

/// Why a bundle cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file name is not a plain file name (empty, a path, reserved).
    #[error("invalid bundle file name '{0}'")]
    InvalidName(String),
    /// Two files have the same name (case-insensitively, as on Windows).
    #[error("duplicate bundle file name '{0}'")]
    Duplicate(String),
    /// The bundle has no `version` file, or it is empty.
    #[error("the bundle has no version")]
    NoVersion,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// File name in the install directory.
    pub name: String,
    /// Contents.
    pub content: Vec<u8>,
    /// SHA-256 of `content`, lowercase hex.
    pub sha256: String,
}

/// What `manifest.json` holds: the bundle version and the SHA-256 of every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version (1).
    pub v: u32,
    /// Bundle version (the `version` file).
    pub version: String,
    /// File name → SHA-256 (lowercase hex). `manifest.json` itself is not listed.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Equal up to the case of the hex digests and of the file names.
    pub fn same_as(&self, other: &Manifest) -> bool {
        let norm = |m: &Manifest| -> BTreeMap<String, String> {
            m.files
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
                .collect()
        };
        self.version == other.version && norm(self) == norm(other)
    }
}

/// An agent bundle: files, version, manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    version: String,
    files: Vec<BundleFile>,
    manifest_json: String,
    manifest_sha256: String,
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.eq_ignore_ascii_case(MANIFEST_FILE)
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Bundle {
    /// The bundle built into this binary (`Powershell/`).
    pub fn embedded() -> &'static Bundle {
        static EMBEDDED_BUNDLE: OnceLock<Bundle> = OnceLock::new();
        EMBEDDED_BUNDLE.get_or_init(|| {
            let files = EMBEDDED
                .iter()
                .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
                .collect();
            // The embedded files are fixed at build time and covered by tests.
            Bundle::new(files).unwrap_or_else(|_| Bundle::empty())
        })
    }

    fn empty() -> Bundle {
        Bundle::assemble("0.0.0".into(), Vec::new())
    }

    /// A bundle from files (name, contents). One of them must be `version`.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Result<Bundle, BundleError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(files.len());
        for (name, content) in files {
            if !valid_name(&name) {
                return Err(BundleError::InvalidName(name));
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(BundleError::Duplicate(name));
            }
            let sha256 = sha256_hex(&content);
            out.push(BundleFile {
                name,
                content,
                sha256,
            });
        }
        let version = out
            .iter()
            .find(|f| f.name == VERSION_FILE)
            .map(|f| parse_version_text(&String::from_utf8_lossy(&f.content)))
            .filter(|v| !v.is_empty())
            .ok_or(BundleError::NoVersion)?;
        Ok(Bundle::assemble(version, out))
    }

    fn assemble(version: String, mut files: Vec<BundleFile>) -> Bundle {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            v: MANIFEST_VERSION,
            version: version.clone(),
            files: files
                .iter()
                .map(|f| (f.name.clone(), f.sha256.clone()))
                .collect(),
        };
        let manifest_json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        let manifest_sha256 = sha256_hex(manifest_json.as_bytes());
        Bundle {
            version,
            files,
            manifest_json,
            manifest_sha256,
        }
    }

    /// The same bundle with one file added or replaced (the version stays unless it is the
    /// `version` file).
    pub fn with_file(&self, name: &str, content: &[u8]) -> Result<Bundle, BundleError> {
        let mut files: Vec<(String, Vec<u8>)> = self
            .files
            .iter()
            .filter(|f| !f.name.eq_ignore_ascii_case(name))
            .map(|f| (f.name.clone(), f.content.clone()))
            .collect();
        files.push((name.to_string(), content.to_vec()));
        Bundle::new(files)
    }

    /// The bundle version (first non-blank line of `version`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The files, sorted by name (without `manifest.json`).
    pub fn files(&self) -> &[BundleFile] {
        &self.files
    }

    /// One file by name (case-insensitive).
    pub fn file(&self, name: &str) -> Option<&BundleFile> {
        self.files
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The manifest.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            v: MANIFEST_VERSION,
            version: self.version.clone(),
            files: self
                .files
                .iter()
                .map(|f| (f.name.clone(), f.sha256.clone()))
                .collect(),
        }
    }

    /// The exact text of `manifest.json` (deterministic).
    pub fn manifest_json(&self) -> &str {
        &self.manifest_json
    }

    /// SHA-256 of `manifest.json`.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// A short id that changes with any file: `<version>+<12 hex of the manifest hash>`.
    pub fn id(&self) -> String {
        format!("{}+{}", self.version, &self.manifest_sha256[..12])
    }

    /// Every file name the installation consists of, `manifest.json` included.
    pub fn installed_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.files.iter().map(|f| f.name.clone()).collect();
        v.push(MANIFEST_FILE.to_string());
        v
    }

    /// Compares a host's installation with this bundle.
    pub fn assess(&self, installed: &Installed) -> Assessment {
        let hash_of = |name: &str| -> Option<&str> {
            installed
                .hashes
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_deref())
        };
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        for f in &self.files {
            match hash_of(&f.name) {
                Some(h) if h.eq_ignore_ascii_case(&f.sha256) => unchanged.push(f.name.clone()),
                _ => changed.push(f.name.clone()),
            }
        }
        let manifest_ok =
            hash_of(MANIFEST_FILE).is_some_and(|h| h.eq_ignore_ascii_case(&self.manifest_sha256));
        let claims_this = installed
            .manifest
            .as_ref()
            .is_some_and(|m| m.same_as(&self.manifest()));
        let any_present = installed.hashes.values().any(Option::is_some);
        let status = if changed.is_empty() && manifest_ok && claims_this {
            AgentStatus::Current
        } else if installed.manifest.is_none() && !any_present {
            AgentStatus::NotInstalled
        } else if claims_this {
            let mut files = changed.clone();
            if !manifest_ok {
                files.push(MANIFEST_FILE.to_string());
            }
            AgentStatus::Corrupt { files }
        } else {
            match &installed.manifest {
                Some(m) => AgentStatus::Stale {
                    installed_version: m.version.clone(),
                },
                None => AgentStatus::Corrupt {
                    files: vec![MANIFEST_FILE.to_string()],
                },
            }
        };
        Assessment {
            status,
            changed,
            unchanged,
        }
    }
}

/// The first non-blank line of a version text, without BOM, NULs and surrounding blanks.
pub fn parse_version_text(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}' || c == '\0'))
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// What a host reported about its installation (the reply of the check script).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The installed `manifest.json`, when present and readable.
    #[serde(default)]
    pub manifest: Option<Manifest>,
    /// SHA-256 of each file asked about (`None` = missing).
    #[serde(default)]
    pub hashes: BTreeMap<String, Option<String>>,
}

/// The state of a host's agent relative to a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStatus {
    /// Installed and every file verified by hash.
    Current,
    /// Nothing installed.
    NotInstalled,
    /// Another bundle is installed.
    Stale {
        /// Its version.
        installed_version: String,
    },
    /// This bundle is installed but files are missing or differ from the manifest.
    Corrupt {
        /// The files that do not verify.
        files: Vec<String>,
    },
}

impl std::fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentStatus::Current => f.write_str("current"),
            AgentStatus::NotInstalled => f.write_str("not installed"),
            AgentStatus::Stale { installed_version } => {
                write!(f, "stale (installed {installed_version})")
            }
            AgentStatus::Corrupt { files } => write!(f, "corrupt ({})", files.join(", ")),
        }
    }
}

/// The verdict of [`Bundle::assess`] and the work a deployment has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Current, stale, corrupt or not installed.
    pub status: AgentStatus,
    /// Bundle files to write (missing or different on the host).
    pub changed: Vec<String>,
    /// Bundle files the host already has byte for byte (copied into staging).
    pub unchanged: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_bundle_has_every_script_and_a_version() {
        let b = Bundle::embedded();
        assert_eq!(b.files().len(), EMBEDDED.len());
        assert!(b.file(crate::contract::command::ENTRY_SCRIPT).is_some());
        assert_eq!(
            b.version(),
            parse_version_text(include_str!("../../Powershell/version"))
        );
        assert!(!b.version().is_empty() && b.version() != "0.0.0");
    }

    #[test]
    fn embedded_scripts_are_ascii_for_powershell_5_1() {
        for f in Bundle::embedded().files() {
            assert!(f.content.is_ascii(), "{} has non-ASCII bytes", f.name);
        }
    }

    #[test]
    fn manifest_lists_the_sha256_of_every_file() {
        let b = Bundle::embedded();
        let m: Manifest = serde_json::from_str(b.manifest_json()).expect("manifest is json");
        assert_eq!(m, b.manifest());
        assert_eq!(m.files.len(), b.files().len());
        for f in b.files() {
            assert_eq!(m.files[&f.name], sha256_hex(&f.content));
        }
        assert_eq!(
            b.manifest_sha256(),
            sha256_hex(b.manifest_json().as_bytes())
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn changing_a_file_changes_the_id_but_not_the_version() {
        let b = Bundle::embedded();
        let c = b
            .with_file("AethervAgent.Vm.ps1", b"# changed\n")
            .expect("valid");
        assert_eq!(c.version(), b.version());
        assert_ne!(c.id(), b.id());
        assert_ne!(c.manifest_sha256(), b.manifest_sha256());
    }

    #[test]
    fn invalid_names_and_missing_version_are_rejected() {
        let v = ("version".to_string(), b"1.0.0\n".to_vec());
        for bad in ["", "..", "a\\b.ps1", "C:x", "manifest.json", "x/y"] {
            assert_eq!(
                Bundle::new(vec![v.clone(), (bad.into(), vec![])]),
                Err(BundleError::InvalidName(bad.into()))
            );
        }
        assert_eq!(
            Bundle::new(vec![v, ("A.ps1".into(), vec![]), ("a.PS1".into(), vec![])]),
            Err(BundleError::Duplicate("a.PS1".into()))
        );
        assert_eq!(
            Bundle::new(vec![("a.ps1".into(), vec![])]),
            Err(BundleError::NoVersion)
        );
    }

    #[test]
    fn version_text_is_cleaned_like_upstream() {
        assert_eq!(parse_version_text("\u{feff}2.0.1\0\r\n"), "2.0.1");
        assert_eq!(parse_version_text("\n\r  \n 2.3.4 \nextra"), "2.3.4");
    }

    fn installed_exactly(b: &Bundle) -> Installed {
        let mut hashes: BTreeMap<String, Option<String>> = b
            .files()
            .iter()
            .map(|f| (f.name.clone(), Some(f.sha256.to_ascii_uppercase())))
            .collect();
        hashes.insert(MANIFEST_FILE.into(), Some(b.manifest_sha256().into()));
        Installed {
            manifest: Some(b.manifest()),
            hashes,
        }
    }

    #[test]
    fn assessment_distinguishes_current_stale_corrupt_and_empty() {
        let b = Bundle::embedded();
        let ok = installed_exactly(b);
        let a = b.assess(&ok);
        assert_eq!(a.status, AgentStatus::Current);
        assert!(a.changed.is_empty());
        assert_eq!(a.unchanged.len(), b.files().len());

        let empty = Installed {
            manifest: None,
            hashes: b.installed_names().into_iter().map(|n| (n, None)).collect(),
        };
        let a = b.assess(&empty);
        assert_eq!(a.status, AgentStatus::NotInstalled);
        assert_eq!(a.changed.len(), b.files().len());

        let mut corrupt = ok.clone();
        corrupt
            .hashes
            .insert("AethervAgent.Nic.ps1".into(), Some("00".repeat(32)));
        let a = b.assess(&corrupt);
        assert_eq!(
            a.status,
            AgentStatus::Corrupt {
                files: vec!["AethervAgent.Nic.ps1".into()]
            }
        );
        assert_eq!(a.changed, vec!["AethervAgent.Nic.ps1".to_string()]);

        let newer = b
            .with_file("AethervAgent.Vm.ps1", b"# v2\n")
            .expect("valid");
        let a = newer.assess(&ok);
        assert_eq!(
            a.status,
            AgentStatus::Stale {
                installed_version: b.version().into()
            }
        );
        assert_eq!(a.changed, vec!["AethervAgent.Vm.ps1".to_string()]);
    }

    /// Reference §10 case 16, in our content-addressed terms. Upstream compares version
    /// strings; we compare the manifest (every file's SHA-256) and deploy whenever the host
    /// differs, so a host "ahead" of the worker is brought to the worker's bundle too: a job
    /// must never run against an agent the worker does not know. Version text is cleaned as
    /// upstream does, and a bundle without a version cannot be built at all.
    #[test]
    fn reference_case_16_deploy_decisions() {
        let bundle = |v: &str, body: &[u8]| {
            Bundle::new(vec![
                ("version".into(), format!("{v}\n").into_bytes()),
                ("A.ps1".into(), body.to_vec()),
            ])
            .expect("bundle")
        };
        let decide = |ours: &Bundle, host: &Bundle| ours.assess(&installed_exactly(host)).status;
        let ours = bundle("2.0.1", b"# 2.0.1\n");
        // container 2.0.1, host 2.0.0 -> deploy
        assert_eq!(
            decide(&ours, &bundle("2.0.0", b"# 2.0.0\n")),
            AgentStatus::Stale {
                installed_version: "2.0.0".into()
            }
        );
        // host 2.0.1 (same files) -> skip
        assert_eq!(
            decide(&ours, &bundle("2.0.1", b"# 2.0.1\n")),
            AgentStatus::Current
        );
        // host "2.0.1" with other files -> deploy (upstream would skip)
        assert!(matches!(
            decide(&ours, &bundle("2.0.1", b"# edited on the host\n")),
            AgentStatus::Stale { .. }
        ));
        // container 1.0.0, host 1.0.1 -> deploy (upstream skips: "host version ahead")
        let old = bundle("1.0.0", b"# 1.0.0\n");
        assert!(matches!(
            decide(&old, &bundle("1.0.1", b"# 1.0.1\n")),
            AgentStatus::Stale { installed_version } if installed_version == "1.0.1"
        ));
        // host "v2" -> deploy
        assert!(matches!(
            decide(&ours, &bundle("v2", b"# v2\n")),
            AgentStatus::Stale { installed_version } if installed_version == "v2"
        ));
        // an empty container version is refused when the bundle is built
        assert_eq!(
            Bundle::new(vec![
                ("version".into(), b"\r\n".to_vec()),
                ("A.ps1".into(), vec![])
            ]),
            Err(BundleError::NoVersion)
        );
        assert_eq!(
            bundle("\u{feff}2.0.1\0\r", b"x").version(),
            "2.0.1",
            "version text is cleaned"
        );
    }
}

/// A PowerShell syntax lint (no `pwsh` on CI machines): every embedded script and every
/// deployment script is parsed with tree-sitter-powershell and must contain no ERROR or
/// MISSING node. Known false positives of that grammar are avoided in the scripts rather than
/// allow-listed: numeric multiplier suffixes (`1GB`) and `"$var #x"` in expandable strings.
/// An empty file would also be reported, and none is embedded.
#[cfg(test)]
mod lint {
    use super::script::{deploy_script, write_scripts, DeployAction};
    use super::Bundle;

    /// Allowed findings: (file, line, column). Empty: every script parses cleanly.
    const ALLOW: &[(&str, usize, usize)] = &[];

    fn errors(src: &str) -> Vec<(usize, usize, String)> {
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&tree_sitter_powershell::LANGUAGE.into())
            .expect("grammar loads");
        let tree = parser.parse(src, None).expect("parses");
        let mut out = Vec::new();
        let mut stack = vec![tree.root_node()];
        while let Some(n) = stack.pop() {
            if n.is_error() || n.is_missing() {
                let p = n.start_position();
                let end = n.end_byte().min(n.start_byte() + 60);
                out.push((
                    p.row + 1,
                    p.column + 1,
                    src.get(n.start_byte()..end).unwrap_or_default().to_string(),
                ));
            }
            let mut c = n.walk();
            stack.extend(n.children(&mut c));
        }
        out
    }

    fn check(name: &str, src: &str) -> Vec<String> {
        errors(src)
            .into_iter()
            .filter(|(l, c, _)| !ALLOW.contains(&(name, *l, *c)))
            .map(|(l, c, t)| format!("{name}:{l}:{c}: {t:?}"))
            .collect()
    }

    #[test]
    fn every_embedded_script_parses() {
        let mut bad = Vec::new();
        for f in Bundle::embedded().files() {
            if f.name.ends_with(".ps1") {
                bad.extend(check(&f.name, &String::from_utf8_lossy(&f.content)));
            }
        }
        assert!(
            bad.is_empty(),
            "PowerShell syntax errors:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn every_deployment_script_parses() {
        let dir = r"C:\Program Files\Aether-V\agent";
        let mut scripts = vec![
            deploy_script(
                &DeployAction::Check {
                    install_dir: dir.into(),
                    names: vec!["a.ps1".into()],
                },
                None,
            ),
            deploy_script(
                &DeployAction::Stage {
                    install_dir: dir.into(),
                    staging: format!("{dir}.staging-1"),
                    copy: vec![],
                },
                None,
            ),
            deploy_script(
                &DeployAction::Commit {
                    install_dir: dir.into(),
                    staging: format!("{dir}.staging-1"),
                    backup: format!("{dir}.previous-1"),
                    manifest_sha256: "00".repeat(32),
                },
                None,
            ),
        ];
        scripts.extend(write_scripts(&format!("{dir}.staging-1"), "x.ps1", b"abc"));
        let mut bad = Vec::new();
        for (i, s) in scripts.iter().enumerate() {
            bad.extend(check(&format!("deploy-{i}"), s));
        }
        assert!(
            bad.is_empty(),
            "PowerShell syntax errors:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn a_real_syntax_error_is_found() {
        assert!(!errors("function f { if ($x -eq 1 { 'a' }\n").is_empty());
        assert!(!errors("$a = @{ x = 1 \n$b = (1 + \n").is_empty());
        assert!(errors("$a = @{ x = 1 }\nWrite-Output $a.x\n").is_empty());
    }
}
