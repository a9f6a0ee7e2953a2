//! Agent deployment on the simulated host: a per-host in-memory file store ([`HostFiles`]), the
//! deployment scripts of [`aetherv_core::bundle::script`] executed against it with the same
//! semantics as the real PowerShell, and the gate that refuses agent invocations when the
//! host has no (intact) agent installed — as PowerShell does when the entry script is missing
//! ("The term '…\Invoke-AethervAgent.ps1' is not recognized"), and as the real agent does
//! when its files do not match `manifest.json` (`agent_corrupt`).
//!
//! The gate is on when [`crate::SimConfig::require_agent`] is set; deployment scripts run
//! either way.

use crate::powershell::{self, Invocation, ScriptOutput};
use crate::sim::Sim;
use aetherv_core::bundle::script::{
    gunzip, parse_deploy_script, reply_line, DeployAction, DeployScript, StepReply,
};
use aetherv_core::bundle::{sha256_hex, Bundle, Manifest, MANIFEST_FILE};
use aetherv_core::contract::command::{
    decode_powershell, find_encoded_command, parse_agent_script, ParsedScript,
};
use aetherv_core::AgentResult;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// A host's files: Windows paths, case-insensitive, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFiles {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

fn norm(path: &str) -> String {
    path.replace('/', "\\")
        .trim_end_matches('\\')
        .to_ascii_lowercase()
}

/// `dir\name`.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}\\{}", dir.trim_end_matches('\\'), name)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('\\').map(|(p, _)| p).unwrap_or("")
}

fn not_found(path: &str) -> String {
    format!("Cannot find path '{path}' because it does not exist.")
}

impl HostFiles {
    /// A file's contents.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&norm(path)).map(Vec::as_slice)
    }

    /// Writes a file (its directory comes into existence).
    pub fn write(&mut self, path: &str, bytes: Vec<u8>) {
        let p = norm(path);
        self.dirs.insert(parent(&p).to_string());
        self.files.insert(p, bytes);
    }

    /// Deletes a file; false when it did not exist.
    pub fn remove(&mut self, path: &str) -> bool {
        self.files.remove(&norm(path)).is_some()
    }

    /// Flips the bytes of a file (keeps its size); false when it does not exist.
    pub fn corrupt(&mut self, path: &str) -> bool {
        match self.files.get_mut(&norm(path)) {
            Some(b) if b.is_empty() => {
                b.push(b'#');
                true
            }
            Some(b) => {
                for x in b.iter_mut().take(64) {
                    *x ^= 0x20;
                }
                true
            }
            None => false,
        }
    }

    /// Every file path (lower case), sorted.
    pub fn paths(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// Whether a file exists.
    pub fn is_file(&self, path: &str) -> bool {
        self.files.contains_key(&norm(path))
    }

    /// Whether a directory exists (created, or holding files).
    pub fn is_dir(&self, path: &str) -> bool {
        let p = norm(path);
        let prefix = format!("{p}\\");
        self.dirs.contains(&p)
            || self.dirs.iter().any(|d| d.starts_with(&prefix))
            || self.files.keys().any(|f| f.starts_with(&prefix))
    }

    fn remove_dir(&mut self, path: &str) {
        let p = norm(path);
        let prefix = format!("{p}\\");
        self.files.retain(|k, _| !k.starts_with(&prefix));
        self.dirs.retain(|d| *d != p && !d.starts_with(&prefix));
    }

    fn rename_dir(&mut self, from: &str, to: &str) -> Result<(), String> {
        let (f, t) = (norm(from), norm(to));
        if !self.is_dir(&f) {
            return Err(not_found(from));
        }
        if self.is_dir(&t) || self.is_file(&t) {
            return Err(format!(
                "Cannot create a file when that file already exists: '{to}'"
            ));
        }
        let fp = format!("{f}\\");
        let moved: Vec<(String, Vec<u8>)> = self
            .files
            .iter()
            .filter(|(k, _)| k.starts_with(&fp))
            .map(|(k, v)| (format!("{t}\\{}", &k[fp.len()..]), v.clone()))
            .collect();
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .filter(|d| **d == f || d.starts_with(&fp))
            .map(|d| format!("{t}{}", &d[f.len()..]))
            .collect();
        self.remove_dir(&f);
        self.files.extend(moved);
        self.dirs.extend(dirs);
        self.dirs.insert(t);
        Ok(())
    }

    /// The SHA-256 of a file, lowercase hex.
    pub fn sha256(&self, path: &str) -> Option<String> {
        self.read(path).map(sha256_hex)
    }

    /// The files of `dir` that fail verification against `dir\manifest.json`, whose own hash
    /// must be `manifest_sha256` when given (the commit check).
    fn verify_dir(&self, dir: &str, manifest_sha256: Option<&str>) -> Vec<String> {
        let mp = join(dir, MANIFEST_FILE);
        let Some(text) = self.read(&mp) else {
            return vec![MANIFEST_FILE.to_string()];
        };
        let mut bad = Vec::new();
        if manifest_sha256.is_some_and(|want| !sha256_hex(text).eq_ignore_ascii_case(want)) {
            bad.push(MANIFEST_FILE.to_string());
        }
        match serde_json::from_slice::<Manifest>(text) {
            Ok(m) => {
                for (name, want) in &m.files {
                    match self.sha256(&join(dir, name)) {
                        Some(h) if h.eq_ignore_ascii_case(want) => {}
                        _ => bad.push(name.clone()),
                    }
                }
            }
            Err(_) => {
                if !bad.iter().any(|b| b == MANIFEST_FILE) {
                    bad.push(MANIFEST_FILE.to_string());
                }
            }
        }
        bad
    }

    /// Installs `bundle` into `install_dir` directly (test setup: a host that already has it).
    pub fn install(&mut self, install_dir: &str, bundle: &Bundle) {
        self.remove_dir(install_dir);
        self.dirs.insert(norm(install_dir));
        for f in bundle.files() {
            self.write(&join(install_dir, &f.name), f.content.clone());
        }
        self.write(
            &join(install_dir, MANIFEST_FILE),
            bundle.manifest_json().as_bytes().to_vec(),
        );
    }
}

fn reply(value: &serde_json::Value, exit_code: i32) -> ScriptOutput {
    ScriptOutput {
        stdout: vec![reply_line(&value)],
        stderr: Vec::new(),
        exit_code,
    }
}

fn failed(error: String) -> ScriptOutput {
    reply(
        &serde_json::to_value(StepReply {
            ok: false,
            error: Some(error),
            ..StepReply::default()
        })
        .unwrap_or_default(),
        1,
    )
}

/// Executes one deployment script against a host's files.
pub fn execute(files: &mut HostFiles, script: &DeployScript) -> ScriptOutput {
    match &script.action {
        DeployAction::Check { install_dir, names } => {
            let mp = join(install_dir, MANIFEST_FILE);
            let manifest: Option<serde_json::Value> =
                files.read(&mp).and_then(|t| serde_json::from_slice(t).ok());
            let mut all: BTreeSet<String> = names.iter().cloned().collect();
            if let Some(obj) = manifest
                .as_ref()
                .and_then(|m| m.get("files"))
                .and_then(|f| f.as_object())
            {
                all.extend(obj.keys().cloned());
            }
            let hashes: BTreeMap<String, Option<String>> = all
                .into_iter()
                .map(|n| {
                    let h = files.sha256(&join(install_dir, &n));
                    (n, h)
                })
                .collect();
            reply(&json!({"manifest": manifest, "hashes": hashes}), 0)
        }
        DeployAction::Stage {
            install_dir,
            staging,
            copy,
        } => {
            files.remove_dir(staging);
            files.dirs.insert(norm(staging));
            for n in copy {
                let src = join(install_dir, n);
                match files.read(&src) {
                    Some(b) => {
                        let b = b.to_vec();
                        files.write(&join(staging, n), b);
                    }
                    None => return failed(not_found(&src)),
                }
            }
            reply(&json!({"ok": true}), 0)
        }
        DeployAction::Write {
            staging,
            name,
            append,
            last,
        } => {
            let part = join(staging, &format!("{name}.gz.part"));
            if !files.is_dir(staging) {
                return failed(format!("Could not find a part of the path '{part}'."));
            }
            let data = script.data.clone().unwrap_or_default();
            let mut content = if *append {
                files.read(&part).map(<[u8]>::to_vec).unwrap_or_default()
            } else {
                Vec::new()
            };
            content.extend(data);
            if *last {
                match gunzip(&content) {
                    Ok(plain) => files.write(&join(staging, name), plain),
                    Err(e) => return failed(e),
                }
                files.remove(&part);
            } else {
                files.write(&part, content);
            }
            reply(&json!({"ok": true}), 0)
        }
        DeployAction::Commit {
            install_dir,
            staging,
            backup,
            manifest_sha256,
        } => {
            let bad = files.verify_dir(staging, Some(manifest_sha256));
            if !bad.is_empty() {
                return reply(&json!({"ok": false, "stage": "staging", "bad": bad}), 1);
            }
            files.remove_dir(backup);
            let moved = files.is_dir(install_dir);
            if moved {
                if let Err(e) = files.rename_dir(install_dir, backup) {
                    return failed(e);
                }
            }
            if let Err(e) = files.rename_dir(staging, install_dir) {
                if moved {
                    let _ = files.rename_dir(backup, install_dir);
                }
                return failed(e);
            }
            files.remove_dir(backup);
            let bad = files.verify_dir(install_dir, Some(manifest_sha256));
            let ok = bad.is_empty();
            reply(
                &json!({"ok": ok, "stage": "installed", "bad": bad}),
                if ok { 0 } else { 1 },
            )
        }
    }
}

/// Whether an agent invocation can run, given the host's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentGate {
    /// The entry script exists and its directory verifies against its manifest.
    Runnable,
    /// The entry script does not exist.
    Missing,
    /// Files of the installation differ from its manifest.
    Corrupt(Vec<String>),
}

/// Checks the installation an agent invocation names by its entry script path.
pub fn agent_gate(files: &HostFiles, entry: &str) -> AgentGate {
    if !files.is_file(entry) {
        return AgentGate::Missing;
    }
    let dir = entry.rsplit_once('\\').map(|(d, _)| d).unwrap_or("");
    if !files.is_file(&join(dir, MANIFEST_FILE)) {
        return AgentGate::Runnable;
    }
    let bad = files.verify_dir(dir, None);
    if bad.is_empty() {
        AgentGate::Runnable
    } else {
        AgentGate::Corrupt(bad)
    }
}

impl Sim {
    /// Classifies a command line for `host` and runs what needs no agent: deployment scripts
    /// execute here (→ [`Invocation::Completed`]); with [`crate::SimConfig::require_agent`],
    /// an agent invocation whose entry script is missing becomes
    /// [`Invocation::NotRecognized`] and one whose files fail verification an `agent_corrupt`
    /// result. Everything else is [`powershell::recognize`].
    pub fn prepare_command(&self, host: &str, line: &str) -> Invocation {
        let script = find_encoded_command(line).and_then(|e| decode_powershell(e).ok());
        if let Some(script) = &script {
            if let Some(parsed) = parse_deploy_script(script) {
                return Invocation::Completed(match parsed {
                    Ok(d) => self
                        .with_host(host, |st| execute(&mut st.files, &d))
                        .unwrap_or_else(|| failed(format!("unknown host {host}"))),
                    Err(e) => failed(e),
                });
            }
        }
        let inv = powershell::recognize(line);
        if !self.config().require_agent || !matches!(inv, Invocation::Agent(_)) {
            return inv;
        }
        let Some(Ok(ParsedScript::Agent { request, entry })) =
            script.as_deref().map(parse_agent_script)
        else {
            return inv;
        };
        let gate = self
            .with_host(host, |st| agent_gate(&st.files, &entry))
            .unwrap_or(AgentGate::Missing);
        match gate {
            AgentGate::Runnable => inv,
            AgentGate::Missing => Invocation::NotRecognized { term: entry },
            AgentGate::Corrupt(bad) => {
                let mut r = AgentResult::error(
                    "agent_corrupt",
                    format!(
                        "Agent bundle is corrupt: {} differ from manifest.json",
                        bad.join(", ")
                    ),
                    &request.correlation_id,
                );
                r.data = json!({"files": bad});
                Invocation::Completed(ScriptOutput {
                    stdout: vec![r.to_line()],
                    stderr: Vec::new(),
                    exit_code: 1,
                })
            }
        }
    }

    /// The files of `install_dir` on `host`: name (lower case) → contents.
    pub fn installed_files(&self, host: &str, install_dir: &str) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("{}\\", norm(install_dir));
        self.with_host(host, |st| {
            st.files
                .files
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(&prefix)
                        .filter(|rest| !rest.contains('\\'))
                        .map(|rest| (rest.to_string(), v.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Corrupts one installed file (`install_dir\name`) on `host`; false when it does not exist.
    pub fn corrupt_file(&self, host: &str, install_dir: &str, name: &str) -> bool {
        self.with_host(host, |st| st.files.corrupt(&join(install_dir, name)))
            .unwrap_or(false)
    }

    /// Installs `bundle` on `host` directly (test setup).
    pub fn install_bundle(&self, host: &str, install_dir: &str, bundle: &Bundle) -> bool {
        self.with_host(host, |st| st.files.install(install_dir, bundle))
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::bundle::script::{
        deploy_script, parse_check_reply, sibling_dirs, write_scripts,
    };
    use aetherv_core::bundle::AgentStatus;
    use aetherv_core::contract::command::DEFAULT_INSTALL_DIR;

    fn run(files: &mut HostFiles, script: &str) -> ScriptOutput {
        let d = parse_deploy_script(script).expect("deploy").expect("valid");
        execute(files, &d)
    }

    fn check(files: &mut HostFiles, b: &Bundle) -> aetherv_core::bundle::Installed {
        let out = run(
            files,
            &deploy_script(
                &DeployAction::Check {
                    install_dir: DEFAULT_INSTALL_DIR.into(),
                    names: b.installed_names(),
                },
                None,
            ),
        );
        parse_check_reply(&out.stdout.join("\n")).expect("check reply")
    }

    fn deploy(
        files: &mut HostFiles,
        b: &Bundle,
        copy: Vec<String>,
        write: &[String],
    ) -> ScriptOutput {
        let (staging, backup) = sibling_dirs(DEFAULT_INSTALL_DIR, "t");
        let stage = DeployAction::Stage {
            install_dir: DEFAULT_INSTALL_DIR.into(),
            staging: staging.clone(),
            copy,
        };
        assert_eq!(run(files, &deploy_script(&stage, None)).exit_code, 0);
        let mut writes: Vec<(String, Vec<u8>)> = write
            .iter()
            .map(|n| (n.clone(), b.file(n).expect("file").content.clone()))
            .collect();
        writes.push((MANIFEST_FILE.into(), b.manifest_json().as_bytes().to_vec()));
        for (n, c) in writes {
            for s in write_scripts(&staging, &n, &c) {
                assert_eq!(run(files, &s).exit_code, 0);
            }
        }
        let commit = DeployAction::Commit {
            install_dir: DEFAULT_INSTALL_DIR.into(),
            staging,
            backup,
            manifest_sha256: b.manifest_sha256().into(),
        };
        run(files, &deploy_script(&commit, None))
    }

    #[test]
    fn fresh_host_deploys_and_verifies() {
        let b = Bundle::embedded();
        let mut files = HostFiles::default();
        let a = b.assess(&check(&mut files, b));
        assert_eq!(a.status, AgentStatus::NotInstalled);
        let out = deploy(&mut files, b, vec![], &a.changed);
        assert_eq!(out.exit_code, 0, "{:?}", out.stdout);
        assert_eq!(b.assess(&check(&mut files, b)).status, AgentStatus::Current);
        let entry = join(DEFAULT_INSTALL_DIR, "Invoke-AethervAgent.ps1");
        assert_eq!(agent_gate(&files, &entry), AgentGate::Runnable);
        assert!(!files.is_dir(&sibling_dirs(DEFAULT_INSTALL_DIR, "t").0));
    }

    #[test]
    fn corrupt_file_is_found_and_only_it_is_rewritten() {
        let b = Bundle::embedded();
        let mut files = HostFiles::default();
        files.install(DEFAULT_INSTALL_DIR, b);
        assert!(files.corrupt(&join(DEFAULT_INSTALL_DIR, "AethervAgent.Disk.ps1")));
        let entry = join(DEFAULT_INSTALL_DIR, "Invoke-AethervAgent.ps1");
        assert_eq!(
            agent_gate(&files, &entry),
            AgentGate::Corrupt(vec!["AethervAgent.Disk.ps1".into()])
        );
        let a = b.assess(&check(&mut files, b));
        assert!(matches!(a.status, AgentStatus::Corrupt { .. }));
        assert_eq!(a.changed, vec!["AethervAgent.Disk.ps1".to_string()]);
        let out = deploy(&mut files, b, a.unchanged.clone(), &a.changed);
        assert_eq!(out.exit_code, 0);
        assert_eq!(b.assess(&check(&mut files, b)).status, AgentStatus::Current);
    }

    #[test]
    fn commit_refuses_a_staging_dir_that_does_not_verify() {
        let b = Bundle::embedded();
        let mut files = HostFiles::default();
        // Stage without writing the files: the manifest lists files the staging dir lacks.
        let out = deploy(&mut files, b, vec![], &[]);
        assert_eq!(out.exit_code, 1);
        let r: StepReply =
            aetherv_core::bundle::script::parse_reply(&out.stdout.join("\n")).expect("reply");
        assert_eq!(r.stage.as_deref(), Some("staging"));
        assert_eq!(r.bad.len(), b.files().len());
        assert!(!files.is_dir(DEFAULT_INSTALL_DIR));
    }

    #[test]
    fn missing_entry_is_missing() {
        let files = HostFiles::default();
        assert_eq!(
            agent_gate(&files, r"C:\x\Invoke-AethervAgent.ps1"),
            AgentGate::Missing
        );
    }
}
