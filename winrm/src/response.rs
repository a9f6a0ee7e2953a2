//! Parsers for WinRS responses and SOAP faults (namespace-aware, roxmltree).
//!
//! Parsers read only what the client needs and tolerate extra elements and
//! any namespace prefixes. They never panic on server input.

use base64::Engine as _;
use roxmltree::{Document, Node};

use crate::envelope::{ns, COMMAND_STATE_DONE};
use crate::error::WinrmError;

/// The WS-Management fault detail code of an `OperationTimeout` expiry
/// (`ERROR_WSMAN_OPERATION_TIMEDOUT`): on Receive it just means "no output yet".
pub const WSMAN_CODE_OPERATION_TIMEOUT: u32 = 2_150_858_793;

/// A SOAP 1.2 fault as WinRM sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `s:Code/s:Value`, for example `s:Receiver`.
    pub code: String,
    /// `s:Code/s:Subcode/s:Value`, for example `w:TimedOut`.
    pub subcode: Option<String>,
    /// `s:Reason/s:Text` (or the WSManFault message when there is no reason).
    pub reason: String,
    /// `s:Detail/f:WSManFault/@Code`, the numeric WS-Management error code.
    pub wsman_code: Option<u32>,
}

impl SoapFault {
    /// True when the fault only reports that the operation timeout expired.
    pub fn is_operation_timeout(&self) -> bool {
        self.wsman_code == Some(WSMAN_CODE_OPERATION_TIMEOUT)
            || self
                .subcode
                .as_deref()
                .is_some_and(|s| local_part(s) == "TimedOut")
    }
}

impl From<SoapFault> for WinrmError {
    fn from(f: SoapFault) -> Self {
        WinrmError::Fault {
            code: f.code,
            subcode: f.subcode,
            reason: f.reason,
        }
    }
}

/// One `rsp:Stream` element of a Receive response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// Stream name: `stdout` or `stderr`.
    pub name: String,
    /// The `CommandId` attribute, when present.
    pub command_id: Option<String>,
    /// Decoded bytes (empty for a bare `End="true"` marker).
    pub data: Vec<u8>,
    /// True when the stream ended with this chunk.
    pub end: bool,
}

/// The `rsp:CommandState` of a Receive response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandState {
    /// True when the state is `.../CommandState/Done`.
    pub done: bool,
    /// `rsp:ExitCode`, present once the command is done.
    pub exit_code: Option<i32>,
}

/// A parsed `rsp:ReceiveResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiveOutput {
    /// Stream chunks in document order.
    pub streams: Vec<StreamChunk>,
    /// The command state, when the response carries one.
    pub state: Option<CommandState>,
}

fn local_part(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn parse(xml: &str) -> Result<Document<'_>, WinrmError> {
    Document::parse(xml).map_err(|e| WinrmError::Protocol(format!("response is not xml: {e}")))
}

fn body<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, WinrmError> {
    let root = doc.root_element();
    if !root.has_tag_name((ns::SOAP, "Envelope")) {
        return Err(WinrmError::Protocol(
            "response is not a soap 1.2 envelope".into(),
        ));
    }
    root.children()
        .find(|n| n.has_tag_name((ns::SOAP, "Body")))
        .ok_or_else(|| WinrmError::Protocol("soap envelope without body".into()))
}

fn child<'a, 'i>(node: Node<'a, 'i>, namespace: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name((namespace, name)))
}

fn trimmed_text(node: Node<'_, '_>) -> String {
    node.text().unwrap_or("").trim().to_owned()
}

/// Extracts the SOAP fault of a response body, if it is one.
pub fn parse_fault(xml: &str) -> Option<SoapFault> {
    let doc = Document::parse(xml).ok()?;
    let fault = doc
        .descendants()
        .find(|n| n.has_tag_name((ns::SOAP, "Fault")))?;
    let code_node = child(fault, ns::SOAP, "Code");
    let code = code_node
        .and_then(|c| child(c, ns::SOAP, "Value"))
        .map(trimmed_text)
        .unwrap_or_default();
    let subcode = code_node
        .and_then(|c| child(c, ns::SOAP, "Subcode"))
        .and_then(|s| child(s, ns::SOAP, "Value"))
        .map(trimmed_text)
        .filter(|s| !s.is_empty());
    let detail = fault
        .descendants()
        .find(|n| n.has_tag_name((ns::WSMAN_FAULT, "WSManFault")));
    let wsman_code = detail
        .and_then(|d| d.attribute("Code"))
        .and_then(|c| c.trim().parse::<u32>().ok());
    let mut reason = child(fault, ns::SOAP, "Reason")
        .and_then(|r| child(r, ns::SOAP, "Text"))
        .map(trimmed_text)
        .unwrap_or_default();
    if reason.is_empty() {
        reason = detail
            .and_then(|d| {
                d.descendants()
                    .find(|n| n.has_tag_name((ns::WSMAN_FAULT, "Message")))
            })
            .map(|m| {
                m.descendants()
                    .filter(|n| n.is_text())
                    .filter_map(|n| n.text())
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
    }
    Some(SoapFault {
        code,
        subcode,
        reason,
        wsman_code,
    })
}

/// The error for a non-200 reply: its SOAP fault, or an HTTP error with a
/// short body snippet.
pub fn error_from_reply(status: u16, body: &str) -> WinrmError {
    if let Some(fault) = parse_fault(body) {
        return fault.into();
    }
    WinrmError::Http {
        status,
        body_snippet: snippet(body),
    }
}

/// At most 200 characters of `body`, whitespace-collapsed.
pub fn snippet(body: &str) -> String {
    let collapsed: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(200).collect()
}

/// Reads the shell id of a Create response: `rsp:ShellId` in the body
/// (Windows) or the `ShellId` selector of `ResourceCreated` (pywinrm fixtures).
pub fn parse_shell_id(xml: &str) -> Result<String, WinrmError> {
    let doc = parse(xml)?;
    let body = body(&doc)?;
    let from_selector = || {
        body.descendants()
            .find(|n| {
                n.has_tag_name((ns::WSMAN, "Selector")) && n.attribute("Name") == Some("ShellId")
            })
            .map(trimmed_text)
            .filter(|s| !s.is_empty())
    };
    shell_text(body, "ShellId")
        .or_else(from_selector)
        .ok_or_else(|| WinrmError::Protocol("create response without shell id".into()))
}

/// Reads `rsp:CommandId` of a Command response.
pub fn parse_command_id(xml: &str) -> Result<String, WinrmError> {
    let doc = parse(xml)?;
    shell_text(body(&doc)?, "CommandId")
        .ok_or_else(|| WinrmError::Protocol("command response without command id".into()))
}

/// The trimmed text of the first `rsp:<name>` below `node`, unless empty.
fn shell_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.descendants()
        .find(|n| n.has_tag_name((ns::SHELL, name)))
        .map(trimmed_text)
        .filter(|s| !s.is_empty())
}

/// Checks that a reply is a SOAP envelope without a fault (Signal, Delete, Send).
pub fn expect_envelope(xml: &str) -> Result<(), WinrmError> {
    if xml.trim().is_empty() {
        // Some servers answer Delete with an empty 200.
        return Ok(());
    }
    let doc = parse(xml)?;
    body(&doc)?;
    Ok(())
}

/// Parses a Receive response: base64 stream chunks and the command state.
pub fn parse_receive(xml: &str) -> Result<ReceiveOutput, WinrmError> {
    let doc = parse(xml)?;
    let body = body(&doc)?;
    let response = body
        .descendants()
        .find(|n| n.has_tag_name((ns::SHELL, "ReceiveResponse")))
        .ok_or_else(|| WinrmError::Protocol("receive response without ReceiveResponse".into()))?;
    let mut out = ReceiveOutput::default();
    for node in response.children().filter(Node::is_element) {
        if node.has_tag_name((ns::SHELL, "Stream")) {
            let encoded: String = node
                .text()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let data = base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map_err(|_| WinrmError::Protocol("stream chunk is not valid base64".into()))?;
            out.streams.push(StreamChunk {
                name: node.attribute("Name").unwrap_or("").to_owned(),
                command_id: node.attribute("CommandId").map(str::to_owned),
                data,
                end: node
                    .attribute("End")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            });
        } else if node.has_tag_name((ns::SHELL, "CommandState")) {
            let done = node.attribute("State") == Some(COMMAND_STATE_DONE);
            let exit_code = match child(node, ns::SHELL, "ExitCode") {
                Some(code) => Some(parse_exit_code(&trimmed_text(code))?),
                None => None,
            };
            out.state = Some(CommandState { done, exit_code });
        }
    }
    Ok(out)
}

/// Exit codes are `DWORD`s; Windows may print large ones unsigned
/// (`4294967295` is `-1`).
fn parse_exit_code(text: &str) -> Result<i32, WinrmError> {
    if let Ok(code) = text.parse::<i32>() {
        return Ok(code);
    }
    text.parse::<u32>()
        .map(|c| c as i32)
        .map_err(|_| WinrmError::Protocol("exit code is not a number".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMED_OUT: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:TimedOut</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  </s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858793" Machine="hv01"><f:Message>timed out</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#;

    #[test]
    fn timed_out_fault_is_recognised() {
        let fault = parse_fault(TIMED_OUT).unwrap();
        assert_eq!(fault.code, "s:Receiver");
        assert_eq!(fault.subcode.as_deref(), Some("w:TimedOut"));
        assert_eq!(fault.wsman_code, Some(WSMAN_CODE_OPERATION_TIMEOUT));
        assert!(fault
            .reason
            .starts_with("The WS-Management service cannot complete"));
        assert!(fault.is_operation_timeout());
    }

    #[test]
    fn other_fault_becomes_error_with_detail_message_fallback() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:InvalidSelectors</s:Value></s:Subcode></s:Code><s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858843"><f:Message><f:ProviderFault>shell not found</f:ProviderFault></f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"#;
        let fault = parse_fault(xml).unwrap();
        assert!(!fault.is_operation_timeout());
        assert_eq!(fault.reason, "shell not found");
        match error_from_reply(500, xml) {
            WinrmError::Fault {
                code,
                subcode,
                reason,
            } => {
                assert_eq!(code, "s:Sender");
                assert_eq!(subcode.as_deref(), Some("w:InvalidSelectors"));
                assert_eq!(reason, "shell not found");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_fault_error_body_becomes_http_error_snippet() {
        let body = format!("<html>\n  {}</html>", "x".repeat(500));
        match error_from_reply(503, &body) {
            WinrmError::Http {
                status,
                body_snippet,
            } => {
                assert_eq!(status, 503);
                assert_eq!(body_snippet.chars().count(), 200);
                assert!(body_snippet.starts_with("<html> xxx"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn shell_id_from_body_is_preferred_and_selector_is_the_fallback() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Body><x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"><w:SelectorSet><w:Selector Name="ShellId">FROM-SELECTOR</w:Selector></w:SelectorSet></x:ResourceCreated><rsp:Shell><rsp:ShellId> FROM-BODY </rsp:ShellId></rsp:Shell></s:Body></s:Envelope>"#;
        assert_eq!(parse_shell_id(xml).unwrap(), "FROM-BODY");
        let only_selector = xml.replace(
            "<rsp:Shell><rsp:ShellId> FROM-BODY </rsp:ShellId></rsp:Shell>",
            "",
        );
        assert_eq!(parse_shell_id(&only_selector).unwrap(), "FROM-SELECTOR");
        let none = only_selector.replace("FROM-SELECTOR", "");
        assert!(matches!(
            parse_shell_id(&none),
            Err(WinrmError::Protocol(_))
        ));
        assert!(matches!(
            parse_shell_id("not xml"),
            Err(WinrmError::Protocol(_))
        ));
        assert!(matches!(
            parse_shell_id("<a/>"),
            Err(WinrmError::Protocol(_))
        ));
    }

    #[test]
    fn receive_streams_state_and_unsigned_exit_codes() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Body><rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C">aGVs
bG8=</rsp:Stream><rsp:Stream Name="stderr" CommandId="C" End="true"/><rsp:CommandState CommandId="C" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"><rsp:ExitCode>4294967295</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse></s:Body></s:Envelope>"#;
        let out = parse_receive(xml).unwrap();
        assert_eq!(out.streams.len(), 2);
        assert_eq!(out.streams[0].data, b"hello");
        assert_eq!(out.streams[0].command_id.as_deref(), Some("C"));
        assert!(!out.streams[0].end);
        assert!(out.streams[1].end && out.streams[1].data.is_empty());
        assert_eq!(
            out.state,
            Some(CommandState {
                done: true,
                exit_code: Some(-1)
            })
        );
        let running = xml.replace("CommandState/Done", "CommandState/Running");
        assert!(!parse_receive(&running).unwrap().state.unwrap().done);
        let bad = xml.replace("aGVs", "!!!!");
        assert!(matches!(parse_receive(&bad), Err(WinrmError::Protocol(_))));
    }
}
