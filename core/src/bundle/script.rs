//! The PowerShell deployment scripts that install a [`super::Bundle`] on a host.
//!
//! They are not agent operations: each is a plain script sent as
//! `powershell.exe … -EncodedCommand <b64>`. A script carries its arguments as data: a base64
//! JSON [`DeployAction`] in `$AethervDeploy='…'`, and for [`DeployAction::Write`] the chunk's
//! bytes in `$AethervData='…'`. No argument is ever interpolated into PowerShell syntax, and
//! the simulated host parses the same block ([`parse_deploy_script`]).
//!
//! Every script prints one reply line, [`DEPLOY_MARKER`] + compact JSON, and exits 0 on success.
//!
//! The steps: [`DeployAction::Check`] (read `manifest.json`, hash the installed files with
//! `Get-FileHash`), [`DeployAction::Stage`] (fresh staging directory with the unchanged files
//! copied from the installation), [`DeployAction::Write`] (append a chunk to a staged file),
//! [`DeployAction::Commit`] (verify the staging directory by hash, switch it into place with
//! two renames, verify again).

use super::Installed;
use crate::contract::command::{encode_powershell, POWERSHELL_EXE, POWERSHELL_SWITCHES};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Prefix of the one reply line every deployment script prints.
pub const DEPLOY_MARKER: &str = "##aetherv-deploy ";
/// The variable holding the base64 JSON arguments.
pub const ARGS_VAR: &str = "$AethervDeploy='";
/// The variable holding a chunk's base64 bytes.
pub const DATA_VAR: &str = "$AethervData='";
/// Longest command line a deployment script may produce (the WinRS `cmd` shell limit is
/// 8191 characters).
pub const MAX_COMMAND_LINE: usize = 8000;

/// One deployment step and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeployAction {
    /// Read `<install_dir>\manifest.json` and hash `names` plus every file it lists.
    Check {
        /// Install directory.
        install_dir: String,
        /// File names to hash even when the installed manifest does not list them.
        names: Vec<String>,
    },
    /// Recreate `staging` empty and copy `copy` from `install_dir` into it.
    Stage {
        /// Install directory.
        install_dir: String,
        /// Staging directory (a sibling of the install directory).
        staging: String,
        /// Unchanged files to copy.
        copy: Vec<String>,
    },
    /// Write (or append) the `$AethervData` bytes, a piece of the file's gzip stream, to
    /// `<staging>\<name>.gz.part`; the last piece also expands it into `<staging>\<name>`.
    Write {
        /// Staging directory.
        staging: String,
        /// File name.
        name: String,
        /// Append instead of truncating.
        append: bool,
        /// The last piece: expand the gzip stream into the file and delete the part file.
        last: bool,
    },
    /// Verify `staging` against its `manifest.json` (whose SHA-256 must be `manifest_sha256`),
    /// rename `install_dir` to `backup` and `staging` to `install_dir`, delete `backup`, and
    /// verify `install_dir`.
    Commit {
        /// Install directory.
        install_dir: String,
        /// Staging directory (sibling).
        staging: String,
        /// Backup directory name for the previous installation (sibling).
        backup: String,
        /// Expected SHA-256 of `manifest.json`.
        manifest_sha256: String,
    },
}

/// A parsed deployment script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployScript {
    /// The step.
    pub action: DeployAction,
    /// The chunk bytes of a [`DeployAction::Write`].
    pub data: Option<Vec<u8>>,
}

/// The reply of [`DeployAction::Stage`], [`DeployAction::Write`] and [`DeployAction::Commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReply {
    /// Whether the step succeeded.
    pub ok: bool,
    /// Commit: which directory was verified last (`staging` or `installed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Commit: files that failed verification.
    #[serde(default)]
    pub bad: Vec<String>,
    /// The exception message when the script failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const PRELUDE: &str = "$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue'\n";

const READ_ARGS: &str = "$a=[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($AethervDeploy))|ConvertFrom-Json\n\
function Out-Reply($o){[Console]::Out.WriteLine('##aetherv-deploy '+(ConvertTo-Json -InputObject $o -Depth 8 -Compress))}\n\
try{\n";

const EPILOGUE: &str = "\n}catch{Out-Reply @{ok=$false;error=$_.Exception.Message};exit 1}\n";

const CHECK_BODY: &str = "$d=$a.install_dir;$m=$null;$mp=Join-Path $d 'manifest.json'\n\
if(Test-Path -LiteralPath $mp -PathType Leaf){try{$m=[IO.File]::ReadAllText($mp)|ConvertFrom-Json}catch{$m=$null}}\n\
$names=@($a.names);if($null -ne $m -and $null -ne $m.files){$names+=@($m.files.PSObject.Properties|ForEach-Object{$_.Name})}\n\
$h=@{};foreach($n in @($names|Sort-Object -Unique)){$p=Join-Path $d $n\n\
if(Test-Path -LiteralPath $p -PathType Leaf){$h[$n]=(Get-FileHash -LiteralPath $p -Algorithm SHA256).Hash.ToLowerInvariant()}else{$h[$n]=$null}}\n\
Out-Reply @{manifest=$m;hashes=$h}";

const STAGE_BODY: &str = "$s=$a.staging;if(Test-Path -LiteralPath $s){Remove-Item -LiteralPath $s -Recurse -Force}\n\
New-Item -ItemType Directory -Path $s -Force|Out-Null\n\
foreach($n in @($a.copy)){Copy-Item -LiteralPath (Join-Path $a.install_dir $n) -Destination (Join-Path $s $n) -Force}\n\
Out-Reply @{ok=$true}";

const WRITE_BODY: &str = "$p=Join-Path $a.staging ($a.name+'.gz.part');$b=[Convert]::FromBase64String($AethervData)\n\
if($a.append){$f=[IO.File]::Open($p,'Append','Write');try{$f.Write($b,0,$b.Length)}finally{$f.Close()}}else{[IO.File]::WriteAllBytes($p,$b)}\n\
if($a.last){$in=[IO.File]::OpenRead($p);try{$z=New-Object IO.Compression.GZipStream($in,[IO.Compression.CompressionMode]::Decompress)\n\
$o=[IO.File]::Create((Join-Path $a.staging $a.name));try{$z.CopyTo($o)}finally{$o.Close();$z.Close()}}finally{$in.Close()}\n\
Remove-Item -LiteralPath $p -Force}\n\
Out-Reply @{ok=$true}";

const COMMIT_BODY: &str = "function Test-Dir($d){$bad=@();$mp=Join-Path $d 'manifest.json'\n\
if(-not(Test-Path -LiteralPath $mp -PathType Leaf)){return @('manifest.json')}\n\
if((Get-FileHash -LiteralPath $mp -Algorithm SHA256).Hash -ne $a.manifest_sha256){$bad+='manifest.json'}\n\
$m=[IO.File]::ReadAllText($mp)|ConvertFrom-Json\n\
foreach($e in @($m.files.PSObject.Properties)){$p=Join-Path $d $e.Name\n\
if(-not(Test-Path -LiteralPath $p -PathType Leaf) -or (Get-FileHash -LiteralPath $p -Algorithm SHA256).Hash -ne $e.Value){$bad+=$e.Name}}\n\
return $bad}\n\
$bad=@(Test-Dir $a.staging)\n\
if($bad.Count -gt 0){Out-Reply @{ok=$false;stage='staging';bad=$bad};exit 1}\n\
$leaf=Split-Path -Leaf $a.install_dir;$moved=$false\n\
if(Test-Path -LiteralPath $a.backup){Remove-Item -LiteralPath $a.backup -Recurse -Force}\n\
if(Test-Path -LiteralPath $a.install_dir){Rename-Item -LiteralPath $a.install_dir -NewName (Split-Path -Leaf $a.backup);$moved=$true}\n\
try{Rename-Item -LiteralPath $a.staging -NewName $leaf}catch{if($moved){Rename-Item -LiteralPath $a.backup -NewName $leaf};throw}\n\
if($moved){Remove-Item -LiteralPath $a.backup -Recurse -Force -ErrorAction SilentlyContinue}\n\
$bad=@(Test-Dir $a.install_dir)\n\
Out-Reply @{ok=($bad.Count -eq 0);stage='installed';bad=$bad};if($bad.Count -gt 0){exit 1}";

/// The script for one step (before encoding). `data` is the chunk of a `Write`.
pub fn deploy_script(action: &DeployAction, data: Option<&[u8]>) -> String {
    let args = B64.encode(serde_json::to_vec(action).unwrap_or_default());
    let body = match action {
        DeployAction::Check { .. } => CHECK_BODY,
        DeployAction::Stage { .. } => STAGE_BODY,
        DeployAction::Write { .. } => WRITE_BODY,
        DeployAction::Commit { .. } => COMMIT_BODY,
    };
    let mut s = String::with_capacity(PRELUDE.len() + args.len() + body.len() + 512);
    s.push_str(PRELUDE);
    s.push_str(ARGS_VAR);
    s.push_str(&args);
    s.push_str("'\n");
    if let Some(d) = data {
        s.push_str(DATA_VAR);
        s.push_str(&B64.encode(d));
        s.push_str("'\n");
    }
    s.push_str(READ_ARGS);
    s.push_str(body);
    s.push_str(EPILOGUE);
    s
}

/// The argument list after `powershell.exe` for a script.
pub fn script_arguments(script: &str) -> Vec<String> {
    let mut args: Vec<String> = POWERSHELL_SWITCHES.iter().map(|s| s.to_string()).collect();
    args.push("-EncodedCommand".into());
    args.push(encode_powershell(script));
    args
}

/// Length of the whole command line (`powershell.exe … -EncodedCommand <b64>`).
pub fn command_line_len(script: &str) -> usize {
    POWERSHELL_EXE.len()
        + script_arguments(script)
            .iter()
            .map(|a| a.len() + 1)
            .sum::<usize>()
}

/// `content` as a gzip stream (what the `Write` scripts carry).
pub fn gzip(content: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(content);
    enc.finish().unwrap_or_default()
}

/// Expands a gzip stream.
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("Found invalid data while decoding: {e}"))?;
    Ok(out)
}

/// The `Write` scripts that put `content` into `<staging>\<name>`: its gzip stream in
/// pieces, each command line within [`MAX_COMMAND_LINE`], the last one expanding it.
pub fn write_scripts(staging: &str, name: &str, content: &[u8]) -> Vec<String> {
    let probe = DeployAction::Write {
        staging: staging.to_string(),
        name: name.to_string(),
        append: false,
        last: false,
    };
    // Encoded length ≈ 8/3 × script characters; base64 data is 4/3 × bytes.
    let overhead = command_line_len(&deploy_script(&probe, Some(&[])));
    let room_chars = MAX_COMMAND_LINE.saturating_sub(overhead + 16) * 3 / 8;
    let chunk = (room_chars / 4 * 3).max(1);
    let packed = gzip(content);
    let pieces: Vec<&[u8]> = packed.chunks(chunk).collect();
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let action = DeployAction::Write {
                staging: staging.to_string(),
                name: name.to_string(),
                append: i > 0,
                last: i + 1 == n,
            };
            deploy_script(&action, Some(c))
        })
        .collect()
}

fn quoted_after<'a>(script: &'a str, var: &str) -> Option<&'a str> {
    let i = script.find(var)?;
    let rest = &script[i + var.len()..];
    let end = rest.find('\'')?;
    Some(&rest[..end])
}

/// Recognises a deployment script: `None` when `script` is not one, `Some(Err)` when its data
/// block is malformed.
pub fn parse_deploy_script(script: &str) -> Option<Result<DeployScript, String>> {
    let args = quoted_after(script, ARGS_VAR)?;
    Some((|| {
        let json = B64
            .decode(args)
            .map_err(|e| format!("deployment arguments are not base64: {e}"))?;
        let action: DeployAction = serde_json::from_slice(&json)
            .map_err(|e| format!("deployment arguments are invalid: {e}"))?;
        let data = match quoted_after(script, DATA_VAR) {
            Some(d) => Some(
                B64.decode(d)
                    .map_err(|e| format!("deployment data is not base64: {e}"))?,
            ),
            None => None,
        };
        Ok(DeployScript { action, data })
    })())
}

/// Finds and parses the reply line in a script's stdout.
pub fn parse_reply<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim_start_matches('\u{feff}').strip_prefix(DEPLOY_MARKER))
        .ok_or_else(|| "no deployment reply line in the output".to_string())?;
    serde_json::from_str(line.trim()).map_err(|e| format!("invalid deployment reply: {e}"))
}

/// The reply line a script prints for `value`.
pub fn reply_line(value: &impl Serialize) -> String {
    format!(
        "{DEPLOY_MARKER}{}",
        serde_json::to_string(value).unwrap_or_default()
    )
}

/// Parses a check reply. A manifest that is not a valid [`super::Manifest`] counts as absent.
pub fn parse_check_reply(stdout: &str) -> Result<Installed, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        manifest: serde_json::Value,
        #[serde(default)]
        hashes: std::collections::BTreeMap<String, Option<String>>,
    }
    let raw: Raw = parse_reply(stdout)?;
    Ok(Installed {
        manifest: serde_json::from_value(raw.manifest).ok(),
        hashes: raw.hashes,
    })
}

/// The staging and backup directories next to an install directory for one deployment;
/// `nonce` keeps concurrent deployments (two workers starting at once) out of each other's way.
pub fn sibling_dirs(install_dir: &str, nonce: &str) -> (String, String) {
    let base = install_dir.trim_end_matches('\\');
    (
        format!("{base}.staging-{nonce}"),
        format!("{base}.previous-{nonce}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::command::{decode_powershell, DEFAULT_INSTALL_DIR};

    #[test]
    fn scripts_round_trip_through_parse() {
        let actions = [
            DeployAction::Check {
                install_dir: DEFAULT_INSTALL_DIR.into(),
                names: vec!["a.ps1".into(), "it's.ps1".into()],
            },
            DeployAction::Stage {
                install_dir: DEFAULT_INSTALL_DIR.into(),
                staging: "C:\\x.staging".into(),
                copy: vec![],
            },
            DeployAction::Commit {
                install_dir: DEFAULT_INSTALL_DIR.into(),
                staging: "C:\\x.staging".into(),
                backup: "C:\\x.previous".into(),
                manifest_sha256: "ab".repeat(32),
            },
        ];
        for a in actions {
            let s = deploy_script(&a, None);
            let encoded = script_arguments(&s).pop().expect("encoded");
            let back = decode_powershell(&encoded).expect("decodes");
            let parsed = parse_deploy_script(&back)
                .expect("recognised")
                .expect("valid");
            assert_eq!(parsed.action, a);
            assert_eq!(parsed.data, None);
        }
        assert!(parse_deploy_script("Get-VM").is_none());
        assert!(matches!(
            parse_deploy_script("$AethervDeploy='***'"),
            Some(Err(_))
        ));
    }

    #[test]
    fn write_scripts_fit_the_command_line_and_carry_every_byte() {
        // Incompressible bytes, so the file needs several pieces.
        let mut x: u32 = 7;
        let content: Vec<u8> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let staging = format!("{DEFAULT_INSTALL_DIR}.staging-0123abcd");
        let scripts = write_scripts(&staging, "AethervAgent.Vm.ps1", &content);
        assert!(scripts.len() > 1);
        let mut back = Vec::new();
        for (i, s) in scripts.iter().enumerate() {
            assert!(
                command_line_len(s) <= MAX_COMMAND_LINE,
                "chunk {i} too long"
            );
            let p = parse_deploy_script(s).expect("recognised").expect("valid");
            match p.action {
                DeployAction::Write {
                    append, name, last, ..
                } => {
                    assert_eq!(append, i > 0);
                    assert_eq!(last, i + 1 == scripts.len());
                    assert_eq!(name, "AethervAgent.Vm.ps1");
                }
                other => panic!("not a write: {other:?}"),
            }
            back.extend(p.data.expect("data"));
        }
        assert_eq!(gunzip(&back).expect("gzip"), content);
        assert_eq!(write_scripts(&staging, "empty", &[]).len(), 1);
        // Scripts compress well: the whole embedded bundle takes a few pieces per file.
        let b = super::super::Bundle::embedded();
        let total: usize = b
            .files()
            .iter()
            .map(|f| write_scripts(&staging, &f.name, &f.content).len())
            .sum();
        assert!(total <= 2 * b.files().len(), "{total} pieces");
    }

    #[test]
    fn every_step_script_fits_the_command_line() {
        let b = super::super::Bundle::embedded();
        let (staging, backup) = sibling_dirs(DEFAULT_INSTALL_DIR, "0123abcd");
        let check = DeployAction::Check {
            install_dir: DEFAULT_INSTALL_DIR.into(),
            names: b.installed_names(),
        };
        let stage = DeployAction::Stage {
            install_dir: DEFAULT_INSTALL_DIR.into(),
            staging: staging.clone(),
            copy: b.installed_names(),
        };
        let commit = DeployAction::Commit {
            install_dir: DEFAULT_INSTALL_DIR.into(),
            staging,
            backup,
            manifest_sha256: b.manifest_sha256().into(),
        };
        for a in [check, stage, commit] {
            assert!(command_line_len(&deploy_script(&a, None)) <= MAX_COMMAND_LINE);
        }
    }

    #[test]
    fn replies_parse_and_bad_manifests_count_as_absent() {
        let out = "noise\n##aetherv-deploy {\"manifest\":{\"weird\":1},\"hashes\":{\"a\":null,\"b\":\"00\"}}\n";
        let i = parse_check_reply(out).expect("parses");
        assert_eq!(i.manifest, None);
        assert_eq!(i.hashes["a"], None);
        assert_eq!(i.hashes["b"].as_deref(), Some("00"));
        let r: StepReply = parse_reply("##aetherv-deploy {\"ok\":true}").expect("parses");
        assert!(r.ok);
        assert!(parse_reply::<StepReply>("nothing").is_err());
        assert_eq!(
            sibling_dirs("C:\\A\\agent\\", "n1").0,
            "C:\\A\\agent.staging-n1".to_string()
        );
    }
}
