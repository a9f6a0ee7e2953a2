//! Recognition of the command lines a WinRS `Command` carries, and PowerShell's CLIXML error
//! format for stderr.
//!
//! The simulated host knows one program: the agent entry script, invoked through
//! `powershell.exe … -EncodedCommand <b64>`. Anything else fails the way PowerShell fails for a
//! command it cannot find ("The term 'X' is not recognized …", exit code 1).

use aetherv_core::contract::command::{
    decode_powershell, find_encoded_command, parse_agent_script, ParsedScript, ENTRY_SCRIPT,
};
use aetherv_core::AgentRequest;

/// What a command line asks the host to run.
#[derive(Debug, PartialEq)]
pub enum Invocation {
    /// The agent entry script with this request.
    Agent(Box<AgentRequest>),
    /// The agent entry script with a request it rejects (not JSON, wrong contract).
    BadRequest(String),
    /// `-EncodedCommand` that is not valid base64 UTF-16LE.
    BadEncoding,
    /// A command PowerShell cannot find.
    NotRecognized {
        /// The unknown term, as PowerShell names it in the error.
        term: String,
    },
    /// A script that already ran (deployment scripts; see [`crate::deploy`]).
    Completed(ScriptOutput),
}

/// What a script that ran synchronously printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// Stdout lines.
    pub stdout: Vec<String>,
    /// Error lines (sent as CLIXML on stderr).
    pub stderr: Vec<String>,
    /// Process exit code.
    pub exit_code: i32,
}

/// Joins a WinRS `<rsp:Command>` and its `<rsp:Arguments>` into one command line.
pub fn join_command_line(command: &str, arguments: &[String]) -> String {
    let mut line = command.trim().to_string();
    for a in arguments {
        line.push(' ');
        line.push_str(a.trim());
    }
    line
}

fn unquote(s: &str) -> &str {
    s.trim_matches(['"', '\''])
}

fn is_powershell(exe: &str) -> bool {
    let exe = unquote(exe).to_ascii_lowercase();
    let base = exe.rsplit(['\\', '/']).next().unwrap_or(&exe);
    matches!(base, "powershell" | "powershell.exe" | "pwsh" | "pwsh.exe")
}

/// The first word of a script, as PowerShell would name an unknown command.
pub fn first_term(script: &str) -> String {
    let s = script.trim_start_matches('\u{feff}').trim();
    let s = s.strip_prefix('&').map(str::trim_start).unwrap_or(s);
    if let Some(rest) = s.strip_prefix('\'') {
        if let Some(end) = rest.find('\'') {
            return rest[..end].to_string();
        }
    }
    s.split(|c: char| c.is_whitespace() || matches!(c, ';' | '(' | '|' | '{'))
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// Classifies a command line.
pub fn recognize(command_line: &str) -> Invocation {
    if let Some(enc) = find_encoded_command(command_line) {
        let Ok(script) = decode_powershell(enc) else {
            return Invocation::BadEncoding;
        };
        return match parse_agent_script(&script) {
            Ok(ParsedScript::Agent { request, entry }) => {
                let file = entry.rsplit('\\').next().unwrap_or(&entry);
                if file.eq_ignore_ascii_case(ENTRY_SCRIPT) {
                    Invocation::Agent(Box::new(request))
                } else {
                    Invocation::NotRecognized { term: entry }
                }
            }
            Ok(ParsedScript::Other(script)) => Invocation::NotRecognized {
                term: first_term(&script),
            },
            Err(e) => Invocation::BadRequest(e.to_string()),
        };
    }
    let mut words = command_line.split_whitespace();
    let Some(exe) = words.next() else {
        return Invocation::NotRecognized {
            term: String::new(),
        };
    };
    if !is_powershell(exe) {
        return Invocation::NotRecognized {
            term: unquote(exe).to_string(),
        };
    }
    // Skip PowerShell's own switches; what is left is the command.
    let rest: Vec<&str> = words.collect();
    let mut i = 0;
    while i < rest.len() {
        let w = rest[i].to_ascii_lowercase();
        if w.starts_with("-c") && "-command".starts_with(w.as_str()) {
            i += 1;
            break;
        }
        if w.starts_with('-') || w.starts_with('/') {
            let takes_value = [
                "-executionpolicy",
                "-ep",
                "-ex",
                "-file",
                "-windowstyle",
                "-outputformat",
                "-inputformat",
                "-version",
            ]
            .iter()
            .any(|p| p.starts_with(w.as_str()) && w.len() >= 3);
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        break;
    }
    let script = rest.get(i..).unwrap_or_default().join(" ");
    Invocation::NotRecognized {
        term: first_term(&script),
    }
}

/// Escapes text for a CLIXML `<S>` element: XML escapes plus PowerShell's `_xHHHH_` form for
/// control characters (CR LF become `_x000D__x000A_`).
fn clixml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '_' if chars.get(i + 1) == Some(&'x') => out.push_str("_x005F_"),
            c if (c as u32) < 0x20 => out.push_str(&format!("_x{:04X}_", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A stderr text in PowerShell's CLIXML form, one `<S S="Error">` per line.
pub fn clixml_error(lines: &[String]) -> String {
    let mut s = String::from(
        "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">",
    );
    for l in lines {
        s.push_str("<S S=\"Error\">");
        s.push_str(&clixml_escape(&format!("{l}\r\n")));
        s.push_str("</S>");
    }
    s.push_str("</Objs>");
    s
}

/// The error lines PowerShell prints for an unknown command.
pub fn not_recognized_lines(term: &str) -> Vec<String> {
    vec![
        format!("{term} : The term '{term}' is not recognized as the name of a cmdlet, function, script file, or operable "),
        "program. Check the spelling of the name, or if a path was included, verify that the path is correct and ".into(),
        "try again.".into(),
        "At line:1 char:1".into(),
        format!("+ {term}"),
        format!("+ {}", "~".repeat(term.chars().count().max(1))),
        format!("    + CategoryInfo          : ObjectNotFound: ({term}:String) [], CommandNotFoundException"),
        "    + FullyQualifiedErrorId : CommandNotFoundException".into(),
        " ".into(),
    ]
}

/// The error lines for an `-EncodedCommand` value that is not base64 UTF-16LE.
pub fn bad_encoding_lines() -> Vec<String> {
    vec![
        "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aetherv_core::contract::command::{
        agent_command_line, encode_powershell, DEFAULT_INSTALL_DIR,
    };
    use aetherv_core::AgentOperation;

    #[test]
    fn agent_command_line_is_an_agent_invocation() {
        let req = AgentRequest::new(AgentOperation::Noop, Default::default(), "job");
        let line = agent_command_line(&req, DEFAULT_INSTALL_DIR);
        assert_eq!(recognize(&line), Invocation::Agent(Box::new(req)));
    }

    #[test]
    fn pywinrm_run_ps_form_names_the_first_word() {
        let line = format!(
            "powershell -encodedcommand {}",
            encode_powershell("Get-VM -Name x")
        );
        assert_eq!(
            recognize(&line),
            Invocation::NotRecognized {
                term: "Get-VM".into()
            }
        );
    }

    #[test]
    fn plain_commands_name_the_executable_or_command() {
        assert_eq!(
            recognize("ipconfig /all"),
            Invocation::NotRecognized {
                term: "ipconfig".into()
            }
        );
        assert_eq!(
            recognize("powershell.exe -NoProfile -ExecutionPolicy Bypass -Command Get-Date"),
            Invocation::NotRecognized {
                term: "Get-Date".into()
            }
        );
    }

    #[test]
    fn other_entry_script_is_not_recognized() {
        let req = AgentRequest::new(AgentOperation::Noop, Default::default(), "job");
        let line = agent_command_line(&req, r"D:\elsewhere");
        let script = aetherv_core::contract::command::agent_script(&req, r"D:\x")
            .replace(ENTRY_SCRIPT, "Other.ps1");
        let line2 = format!("powershell -EncodedCommand {}", encode_powershell(&script));
        assert!(matches!(recognize(&line), Invocation::Agent(_)));
        assert_eq!(
            recognize(&line2),
            Invocation::NotRecognized {
                term: r"D:\x\Other.ps1".into()
            }
        );
    }

    #[test]
    fn malformed_request_is_a_bad_request() {
        use base64::Engine as _;
        let json = base64::engine::general_purpose::STANDARD
            .encode(br#"{"v":1,"operation":"vm.explode"}"#);
        let script = format!(
            "$r=[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{json}')); & 'C:\\x\\{ENTRY_SCRIPT}' -RequestJson $r"
        );
        let line = format!("powershell -EncodedCommand {}", encode_powershell(&script));
        assert!(
            matches!(recognize(&line), Invocation::BadRequest(_)),
            "{:?}",
            recognize(&line)
        );
        assert_eq!(
            recognize("powershell -EncodedCommand ***"),
            Invocation::BadEncoding
        );
    }

    #[test]
    fn clixml_escapes_crlf_and_markup() {
        let s = clixml_error(&["a<b> _x".into()]);
        assert!(s.starts_with("#< CLIXML\r\n<Objs"));
        assert!(s.contains("<S S=\"Error\">a&lt;b&gt; _x005F_x_x000D__x000A_</S>"));
    }
}
