//! Helpers for starting `powershell.exe` through WinRS.
//!
//! `-EncodedCommand` takes the script as base64 of its UTF-16LE bytes, which
//! sidesteps every quoting rule of `cmd.exe` and PowerShell. WinRS runs the
//! command line through `cmd.exe` (`WINRS_SKIP_CMD_SHELL=FALSE`), whose line
//! limit is 8191 characters, so long inputs belong on stdin, not in the script.

use base64::Engine as _;

use crate::error::WinrmError;

/// The longest `-EncodedCommand` value accepted, leaving room for the rest of
/// the `cmd.exe` command line (8191 characters).
pub const MAX_ENCODED_COMMAND_CHARS: usize = 7800;

/// Base64 of the UTF-16LE encoding of `script`, as `-EncodedCommand` expects.
pub fn encode_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

/// Arguments for `powershell.exe` running `script` non-interactively, without
/// profile and with a bypassed execution policy.
///
/// Fails with [`WinrmError::CommandTooLong`] when the encoded script would not
/// fit the `cmd.exe` command line.
pub fn encoded_command_args(script: &str) -> Result<Vec<String>, WinrmError> {
    let encoded = encode_command(script);
    if encoded.len() > MAX_ENCODED_COMMAND_CHARS {
        return Err(WinrmError::CommandTooLong {
            len: encoded.len(),
            max: MAX_ENCODED_COMMAND_CHARS,
        });
    }
    Ok(vec![
        "-NoLogo".to_owned(),
        "-NoProfile".to_owned(),
        "-NonInteractive".to_owned(),
        "-ExecutionPolicy".to_owned(),
        "Bypass".to_owned(),
        "-EncodedCommand".to_owned(),
        encoded,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_utf16le_base64() {
        assert_eq!(encode_command("echo"), "ZQBjAGgAbwA=");
        assert_eq!(encode_command("€"), "rCA=");
        let args = encoded_command_args("Get-VM").unwrap();
        assert_eq!(args.last().map(String::as_str), Some("RwBlAHQALQBWAE0A"));
        assert_eq!(args[..2], ["-NoLogo".to_owned(), "-NoProfile".to_owned()]);
    }

    #[test]
    fn rejects_scripts_too_long_for_cmd() {
        let long = "x".repeat(3000);
        assert!(matches!(
            encoded_command_args(&long),
            Err(WinrmError::CommandTooLong {
                len: 8000,
                max: MAX_ENCODED_COMMAND_CHARS
            })
        ));
        assert!(encoded_command_args(&"x".repeat(2900)).is_ok());
    }
}
