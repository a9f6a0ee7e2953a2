//! The exact PowerShell command line the worker sends to run one agent operation, and its inverse
//! (used by the simulated host to understand what it was sent).
//!
//! Arguments travel as data: the request JSON is base64-encoded inside the script, and the script
//! is UTF-16LE base64 in `-EncodedCommand`, so no value is ever interpolated into PowerShell
//! syntax.

use super::agent::AgentRequest;
use super::ContractError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Default install directory of the agent bundle on a host.
pub const DEFAULT_INSTALL_DIR: &str = r"C:\Program Files\Aether-V\agent";
/// The agent's entry script, relative to the install directory.
pub const ENTRY_SCRIPT: &str = "Invoke-AethervAgent.ps1";
/// The executable the command line starts.
pub const POWERSHELL_EXE: &str = "powershell.exe";
/// The fixed switches before `-EncodedCommand`.
pub const POWERSHELL_SWITCHES: [&str; 5] = [
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
];

/// Encodes a PowerShell script for `-EncodedCommand` (base64 of UTF-16LE).
pub fn encode_powershell(script: &str) -> String {
    let bytes: Vec<u8> = script
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    B64.encode(bytes)
}

/// Decodes an `-EncodedCommand` argument back to the script text.
pub fn decode_powershell(encoded: &str) -> Result<String, String> {
    let bytes = B64
        .decode(encoded.trim())
        .map_err(|e| format!("encoded command is not base64: {e}"))?;
    if bytes.len() % 2 != 0 {
        return Err("encoded command is not UTF-16LE (odd length)".into());
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|e| format!("encoded command is not UTF-16LE: {e}"))
}

/// Quotes a string as a PowerShell single-quoted literal.
pub fn ps_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The script that runs one agent request (before encoding).
pub fn agent_script(req: &AgentRequest, install_dir: &str) -> String {
    let json = serde_json::to_vec(req).unwrap_or_default();
    let entry = format!("{}\\{}", install_dir.trim_end_matches('\\'), ENTRY_SCRIPT);
    format!(
        "$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue';\
         $r=[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{}'));\
         & {} -RequestJson $r;exit $LASTEXITCODE",
        B64.encode(json),
        ps_quote(&entry)
    )
}

/// The argument list after the executable (`-NoLogo … -EncodedCommand <b64>`).
pub fn agent_arguments(req: &AgentRequest, install_dir: &str) -> Vec<String> {
    let mut args: Vec<String> = POWERSHELL_SWITCHES.iter().map(|s| s.to_string()).collect();
    args.push("-EncodedCommand".into());
    args.push(encode_powershell(&agent_script(req, install_dir)));
    args
}

/// The whole command line as one string (what `aetherv agent-command` prints).
pub fn agent_command_line(req: &AgentRequest, install_dir: &str) -> String {
    let mut s = String::from(POWERSHELL_EXE);
    for a in agent_arguments(req, install_dir) {
        s.push(' ');
        s.push_str(&a);
    }
    s
}

/// Finds the `-EncodedCommand` value in a command line (PowerShell accepts any unambiguous
/// prefix of the parameter name down to `-e`, case-insensitively, with `-` or `/`).
pub fn find_encoded_command(command_line: &str) -> Option<&str> {
    let mut parts = command_line.split_whitespace();
    while let Some(p) = parts.next() {
        let name = p.trim_start_matches(['-', '/']);
        if name.len() < p.len() && !name.is_empty() {
            let lower = name.to_ascii_lowercase();
            let is_encoded = lower == "e"
                || lower == "ec"
                || (lower.len() >= 2 && "encodedcommand".starts_with(&lower));
            if is_encoded {
                return parts.next();
            }
        }
    }
    None
}

/// What a decoded script turned out to be.
#[derive(Debug, PartialEq)]
pub enum ParsedScript {
    /// An agent invocation: the request and the entry script path it calls.
    Agent {
        /// The decoded request.
        request: AgentRequest,
        /// The entry script path named in the script.
        entry: String,
    },
    /// Any other script (returned verbatim).
    Other(String),
}

/// Recognises an agent invocation script built by [`agent_script`].
pub fn parse_agent_script(script: &str) -> Result<ParsedScript, ContractError> {
    const START: &str = "FromBase64String('";
    let Some(i) = script.find(START) else {
        return Ok(ParsedScript::Other(script.to_string()));
    };
    let rest = &script[i + START.len()..];
    let Some(end) = rest.find('\'') else {
        return Ok(ParsedScript::Other(script.to_string()));
    };
    let after = &rest[end..];
    let entry = after.find("& '").and_then(|j| {
        let s = &after[j + 3..];
        s.find("' -RequestJson").map(|k| s[..k].replace("''", "'"))
    });
    let Some(entry) = entry else {
        return Ok(ParsedScript::Other(script.to_string()));
    };
    let json = B64
        .decode(&rest[..end])
        .map_err(|e| ContractError::NotJson(format!("request is not base64: {e}")))?;
    let request = AgentRequest::from_slice(&json)?;
    Ok(ParsedScript::Agent { request, entry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::agent::AgentOperation;

    #[test]
    fn encoded_command_round_trips_non_ascii() {
        let s = "Write-Output 'héllo ✓'";
        assert_eq!(decode_powershell(&encode_powershell(s)).as_deref(), Ok(s));
    }

    #[test]
    fn agent_command_line_is_recognised_and_decoded() {
        let mut spec = serde_json::Map::new();
        spec.insert("vm_name".into(), serde_json::json!("it's-a-vm"));
        let req = AgentRequest::new(AgentOperation::VmCreate, spec, "job-1");
        let line = agent_command_line(&req, DEFAULT_INSTALL_DIR);
        assert!(line.starts_with("powershell.exe -NoLogo"));
        let enc = find_encoded_command(&line).expect("encoded command present");
        let script = decode_powershell(enc).expect("decodes");
        match parse_agent_script(&script).expect("parses") {
            ParsedScript::Agent { request, entry } => {
                assert_eq!(request, req);
                assert_eq!(entry, format!("{DEFAULT_INSTALL_DIR}\\{ENTRY_SCRIPT}"));
            }
            other => panic!("not recognised: {other:?}"),
        }
    }

    #[test]
    fn abbreviated_switches_are_found() {
        assert_eq!(find_encoded_command("powershell -enc QQA="), Some("QQA="));
        assert_eq!(find_encoded_command("powershell -e QQA="), Some("QQA="));
        assert_eq!(
            find_encoded_command("PowerShell /EncodedCommand QQA="),
            Some("QQA=")
        );
        assert_eq!(
            find_encoded_command("powershell -ExecutionPolicy Bypass -File x.ps1"),
            None
        );
    }

    #[test]
    fn other_scripts_are_returned_verbatim() {
        assert_eq!(
            parse_agent_script("Get-VM").expect("ok"),
            ParsedScript::Other("Get-VM".into())
        );
    }
}
