//! The WS-Management / WinRS wire format (MS-WSMV): parsing requests and building responses
//! and SOAP faults the way Windows writes them. Pure text in, text out; no state and no I/O.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::time::Duration;

// The wire vocabulary and escaping are the client's: one definition for both ends.
/// WS-Addressing namespace.
pub use aetherv_winrm::envelope::ns::ADDRESSING as NS_ADDRESSING;
/// WinRS shell namespace.
pub use aetherv_winrm::envelope::ns::SHELL as NS_SHELL;
/// SOAP 1.2 envelope namespace.
pub use aetherv_winrm::envelope::ns::SOAP as NS_SOAP;
/// DMTF WS-Management namespace.
pub use aetherv_winrm::envelope::ns::WSMAN as NS_WSMAN;
/// Escapes XML text and attribute values.
pub use aetherv_winrm::envelope::xml_escape;
/// `CommandState` value of a finished command.
pub use aetherv_winrm::envelope::COMMAND_STATE_DONE as STATE_DONE;
/// The cmd shell resource URI.
pub use aetherv_winrm::envelope::RESOURCE_URI_CMD as RESOURCE_CMD;
/// `CommandState` value of a running command.
pub const STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
/// The terminate signal code.
pub const SIGNAL_TERMINATE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate";

use aetherv_winrm::envelope::action::{
    COMMAND as ACTION_COMMAND, CREATE as ACTION_CREATE, DELETE as ACTION_DELETE,
    RECEIVE as ACTION_RECEIVE, SEND as ACTION_SEND, SIGNAL as ACTION_SIGNAL,
};
const ACTION_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

/// WSManFault code: the operation did not complete within `OperationTimeout`.
pub const FAULT_TIMED_OUT: u32 = 2150858793;
/// WSManFault code: the shell named by the ShellId selector does not exist.
pub const FAULT_SHELL_NOT_FOUND: u32 = 2150858843;
/// WSManFault code: the resource URI is not supported.
pub const FAULT_BAD_RESOURCE: u32 = 2150858811;
/// WSManFault code: the action is not supported.
pub const FAULT_BAD_ACTION: u32 = 2150858769;
/// WSManFault code: the request is not well-formed.
pub const FAULT_BAD_XML: u32 = 2150858817;

/// Why a request could not be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum WsmanError {
    /// Not XML.
    #[error("request is not well-formed xml: {0}")]
    Xml(String),
    /// A required header or body element is missing.
    #[error("request lacks {0}")]
    Missing(&'static str),
    /// A stream payload is not base64.
    #[error("stream data is not base64")]
    Base64,
}

/// The WinRS operation a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Create a shell.
    Create,
    /// Delete the shell.
    Delete,
    /// Start a command in the shell.
    Command {
        /// Client-chosen command id (`CommandLine/@CommandId`), if any.
        command_id: Option<String>,
        /// `<rsp:Command>`.
        command: String,
        /// Every `<rsp:Arguments>`.
        arguments: Vec<String>,
    },
    /// Feed stdin.
    Send {
        /// Target command.
        command_id: String,
        /// Decoded bytes.
        data: Vec<u8>,
        /// `End="true"`.
        end: bool,
    },
    /// Read output.
    Receive {
        /// Target command.
        command_id: String,
    },
    /// Signal a command.
    Signal {
        /// Target command.
        command_id: String,
        /// Signal code URI.
        code: String,
    },
    /// An action the server does not implement.
    Unsupported(String),
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What to do.
    pub operation: Operation,
    /// `wsa:MessageID`, echoed as `RelatesTo`.
    pub message_id: String,
    /// `w:ResourceURI`.
    pub resource_uri: String,
    /// The `ShellId` selector.
    pub shell_id: Option<String>,
    /// `w:OperationTimeout`.
    pub timeout: Option<Duration>,
}

fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
    })
}

fn text(node: Option<roxmltree::Node<'_, '_>>) -> String {
    node.and_then(|n| n.text())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Parses an `xs:duration` such as `PT20S`, `PT60.000S`, `PT1M30S`, `P0DT0H0M5S`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().strip_prefix('P')?;
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let mut secs = 0f64;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
            } else {
                let (_, mult) = units.iter().find(|(u, _)| *u == c)?;
                secs += num.parse::<f64>().ok()? * mult;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    take(date, &[('D', 86400.0)])?;
    take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses a WS-Management request envelope.
pub fn parse_request(xml: &str) -> Result<Request, WsmanError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| WsmanError::Xml(e.to_string()))?;
    let env = doc.root_element();
    let header = child(env, NS_SOAP, "Header").ok_or(WsmanError::Missing("soap header"))?;
    let body = child(env, NS_SOAP, "Body");
    let action = text(child(header, NS_ADDRESSING, "Action"));
    if action.is_empty() {
        return Err(WsmanError::Missing("wsa:Action"));
    }
    let message_id = text(child(header, NS_ADDRESSING, "MessageID"));
    let resource_uri = text(child(header, NS_WSMAN, "ResourceURI"));
    let shell_id = child(header, NS_WSMAN, "SelectorSet").and_then(|set| {
        set.children()
            .find(|n| n.is_element() && n.attribute("Name") == Some("ShellId"))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    });
    let timeout = child(header, NS_WSMAN, "OperationTimeout")
        .and_then(|n| n.text())
        .and_then(parse_duration);
    let first = body.and_then(|b| b.children().find(|n| n.is_element()));
    let operation = match action.as_str() {
        ACTION_CREATE => Operation::Create,
        ACTION_DELETE => Operation::Delete,
        ACTION_COMMAND => {
            let line = first
                .filter(|n| n.tag_name().name() == "CommandLine")
                .ok_or(WsmanError::Missing("rsp:CommandLine"))?;
            Operation::Command {
                command_id: line.attribute("CommandId").map(str::to_string),
                command: text(child(line, NS_SHELL, "Command")),
                arguments: line
                    .children()
                    .filter(|n| n.is_element() && n.tag_name().name() == "Arguments")
                    .map(|n| n.text().unwrap_or_default().to_string())
                    .collect(),
            }
        }
        ACTION_SEND => {
            let stream = first
                .and_then(|s| child(s, NS_SHELL, "Stream"))
                .ok_or(WsmanError::Missing("rsp:Stream"))?;
            let data = B64
                .decode(stream.text().unwrap_or_default().trim())
                .map_err(|_| WsmanError::Base64)?;
            Operation::Send {
                command_id: stream
                    .attribute("CommandId")
                    .unwrap_or_default()
                    .to_string(),
                data,
                end: stream
                    .attribute("End")
                    .is_some_and(|e| e.eq_ignore_ascii_case("true")),
            }
        }
        ACTION_RECEIVE => {
            let ds = first
                .and_then(|r| child(r, NS_SHELL, "DesiredStream"))
                .ok_or(WsmanError::Missing("rsp:DesiredStream"))?;
            Operation::Receive {
                command_id: ds.attribute("CommandId").unwrap_or_default().to_string(),
            }
        }
        ACTION_SIGNAL => {
            let sig = first
                .filter(|n| n.tag_name().name() == "Signal")
                .ok_or(WsmanError::Missing("rsp:Signal"))?;
            Operation::Signal {
                command_id: sig.attribute("CommandId").unwrap_or_default().to_string(),
                code: text(child(sig, NS_SHELL, "Code")),
            }
        }
        other => Operation::Unsupported(other.to_string()),
    };
    Ok(Request {
        operation,
        message_id,
        resource_uri,
        shell_id,
        timeout,
    })
}

/// A response envelope with Windows' namespace prefixes.
pub fn envelope(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<s:Envelope xml:lang=\"en-US\" xmlns:s=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" \
         xmlns:x=\"http://schemas.xmlsoap.org/ws/2004/09/transfer\" xmlns:w=\"{NS_WSMAN}\" \
         xmlns:rsp=\"{NS_SHELL}\" xmlns:p=\"http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd\">\
         <s:Header><a:Action>{}</a:Action><a:MessageID>uuid:{}</a:MessageID>\
         <a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>\
         <a:RelatesTo>{}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        xml_escape(action),
        uuid::Uuid::new_v4().to_string().to_ascii_uppercase(),
        xml_escape(relates_to),
    )
}

/// The response to `Create`: `ResourceCreated` with the ShellId selector, and the `Shell`.
pub fn create_response(relates_to: &str, address: &str, shell_id: &str, owner: &str) -> String {
    let id = xml_escape(shell_id);
    let body = format!(
        "<x:ResourceCreated><a:Address>{}</a:Address><a:ReferenceParameters>\
         <w:ResourceURI>{RESOURCE_CMD}</w:ResourceURI><w:SelectorSet>\
         <w:Selector Name=\"ShellId\">{id}</w:Selector></w:SelectorSet></a:ReferenceParameters>\
         </x:ResourceCreated><rsp:Shell><rsp:ShellId>{id}</rsp:ShellId>\
         <rsp:ResourceUri>{RESOURCE_CMD}</rsp:ResourceUri><rsp:Owner>{}</rsp:Owner>\
         <rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>\
         <rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>\
         <rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>\
         </rsp:Shell>",
        xml_escape(address),
        xml_escape(owner),
    );
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
        relates_to,
        &body,
    )
}

/// The response to `Delete`.
pub fn delete_response(relates_to: &str) -> String {
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
        relates_to,
        "",
    )
}

/// The response to `Command`.
pub fn command_response(relates_to: &str, command_id: &str) -> String {
    envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
        relates_to,
        &format!(
            "<rsp:CommandResponse><rsp:CommandId>{}</rsp:CommandId></rsp:CommandResponse>",
            xml_escape(command_id)
        ),
    )
}

/// The response to `Send`.
pub fn send_response(relates_to: &str) -> String {
    envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
        relates_to,
        "<rsp:SendResponse/>",
    )
}

/// The response to `Signal`.
pub fn signal_response(relates_to: &str) -> String {
    envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
        relates_to,
        "<rsp:SignalResponse/>",
    )
}

/// One `Receive` response: the output chunks and, when finished, `Done` with the exit code.
pub fn receive_response(
    relates_to: &str,
    command_id: &str,
    stdout: &[u8],
    stderr: &[u8],
    exit_code: Option<i32>,
) -> String {
    let id = xml_escape(command_id);
    let mut body = String::from("<rsp:ReceiveResponse>");
    let end = if exit_code.is_some() {
        " End=\"true\""
    } else {
        ""
    };
    for (name, data) in [("stdout", stdout), ("stderr", stderr)] {
        if !data.is_empty() {
            body.push_str(&format!(
                "<rsp:Stream Name=\"{name}\" CommandId=\"{id}\">{}</rsp:Stream>",
                B64.encode(data)
            ));
        }
        if exit_code.is_some() {
            body.push_str(&format!(
                "<rsp:Stream Name=\"{name}\" CommandId=\"{id}\"{end}></rsp:Stream>"
            ));
        }
    }
    match exit_code {
        Some(code) => body.push_str(&format!(
            "<rsp:CommandState CommandId=\"{id}\" State=\"{STATE_DONE}\"><rsp:ExitCode>{}</rsp:ExitCode></rsp:CommandState>",
            // Windows reports exit codes as unsigned 32-bit values (-1 is 4294967295).
            code as u32
        )),
        None => body.push_str(&format!(
            "<rsp:CommandState CommandId=\"{id}\" State=\"{STATE_RUNNING}\"/>"
        )),
    }
    body.push_str("</rsp:ReceiveResponse>");
    envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
        relates_to,
        &body,
    )
}

/// A SOAP fault with a `WSManFault` detail, as Windows sends with HTTP 500.
pub fn fault(
    relates_to: &str,
    code: &str,
    subcode: &str,
    wsman_code: u32,
    machine: &str,
    message: &str,
) -> String {
    let msg = xml_escape(message);
    let body = format!(
        "<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>\
         <s:Reason><s:Text xml:lang=\"en-US\">{msg}</s:Text></s:Reason><s:Detail>\
         <f:WSManFault xmlns:f=\"http://schemas.microsoft.com/wbem/wsman/1/wsmanfault\" Code=\"{wsman_code}\" Machine=\"{}\">\
         <f:Message>{msg}</f:Message></f:WSManFault></s:Detail></s:Fault>",
        xml_escape(machine)
    );
    envelope(ACTION_FAULT, relates_to, &body)
}

/// The `w:TimedOut` fault a `Receive` gets when no output arrived within `OperationTimeout`.
pub fn timed_out_fault(relates_to: &str, machine: &str) -> String {
    fault(
        relates_to,
        "s:Receiver",
        "w:TimedOut",
        FAULT_TIMED_OUT,
        machine,
        "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  ",
    )
}

/// The fault for an unknown ShellId.
pub fn shell_not_found_fault(relates_to: &str, machine: &str, shell_id: &str) -> String {
    fault(
        relates_to,
        "s:Sender",
        "w:InvalidSelectors",
        FAULT_SHELL_NOT_FOUND,
        machine,
        &format!(
            "The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on the server. \
             Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. \
             Provide the correct ShellId or create a new shell and retry the operation. "
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("PT20S"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("PT60.000S"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("PT1M30S"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("P0DT0H0M5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("20"), None);
        assert_eq!(parse_duration("PTxS"), None);
    }

    #[test]
    fn command_request_parses_arguments() {
        let xml = format!(
            r#"<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:w="{NS_WSMAN}" xmlns:rsp="{NS_SHELL}">
            <s:Header><a:Action>{ACTION_COMMAND}</a:Action><a:MessageID>uuid:1</a:MessageID>
            <w:ResourceURI>{RESOURCE_CMD}</w:ResourceURI>
            <w:SelectorSet><w:Selector Name="ShellId">S1</w:Selector></w:SelectorSet>
            <w:OperationTimeout>PT20S</w:OperationTimeout></s:Header>
            <s:Body><rsp:CommandLine><rsp:Command>powershell.exe</rsp:Command>
            <rsp:Arguments>-NoLogo</rsp:Arguments><rsp:Arguments>-EncodedCommand</rsp:Arguments></rsp:CommandLine></s:Body></s:Envelope>"#
        );
        let r = parse_request(&xml).expect("parses");
        assert_eq!(r.shell_id.as_deref(), Some("S1"));
        assert_eq!(r.message_id, "uuid:1");
        assert_eq!(r.timeout, Some(Duration::from_secs(20)));
        assert_eq!(
            r.operation,
            Operation::Command {
                command_id: None,
                command: "powershell.exe".into(),
                arguments: vec!["-NoLogo".into(), "-EncodedCommand".into()]
            }
        );
    }

    #[test]
    fn responses_are_well_formed() {
        for xml in [
            create_response("uuid:1", "http://h/wsman", "S&1", "u"),
            receive_response("uuid:1", "C", b"out", b"", Some(0)),
            receive_response("uuid:1", "C", b"", b"", None),
            timed_out_fault("uuid:1", "hv01"),
            shell_not_found_fault("uuid:1", "hv01", "X"),
        ] {
            roxmltree::Document::parse(&xml).expect("well-formed");
        }
    }
}
