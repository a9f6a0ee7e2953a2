//! SOAP 1.2 / WS-Addressing / WS-Management envelope builders for WinRS.
//!
//! Pure string building: every function returns the complete XML text of one
//! request. Values are XML-escaped; the message id is passed in so tests are
//! deterministic. Shapes follow MS-WSMV (WinRS `Create`, `Command`, `Send`,
//! `Receive`, `Signal`, `Delete`) and match pywinrm's recorded requests.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use uuid::Uuid;

/// XML namespaces used on the wire.
pub mod ns {
    /// SOAP 1.2 envelope.
    pub const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
    /// WS-Addressing (2004/08, as WinRM uses it).
    pub const ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
    /// DMTF WS-Management.
    pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
    /// Microsoft WS-Management extensions (DataLocale, …).
    pub const MS_WSMAN: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
    /// WinRS shell.
    pub const SHELL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
    /// WS-Transfer.
    pub const TRANSFER: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
    /// The WS-Management fault detail (`WSManFault`).
    pub const WSMAN_FAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
}

/// `wsa:Action` values.
pub mod action {
    /// WS-Transfer Create (open a shell).
    pub const CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
    /// WS-Transfer Delete (close a shell).
    pub const DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
    /// Start a command in a shell.
    pub const COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
    /// Send stdin to a command.
    pub const SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
    /// Receive output from a command.
    pub const RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
    /// Signal a command (terminate, ctrl_c).
    pub const SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
}

/// The WinRS `cmd` shell resource.
pub const RESOURCE_URI_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
/// The anonymous WS-Addressing reply address.
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
/// `CommandState` value of a finished command.
pub const COMMAND_STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";

/// WinRS signal codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalCode {
    /// Terminate the command (and release its resources).
    Terminate,
    /// Deliver Ctrl+C to the command.
    CtrlC,
}

impl SignalCode {
    /// The signal URI sent in `rsp:Code`.
    pub fn uri(self) -> &'static str {
        match self {
            SignalCode::Terminate => {
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
            }
            SignalCode::CtrlC => {
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c"
            }
        }
    }
}

/// Header values shared by every request of one client.
#[derive(Debug, Clone)]
pub struct EnvelopeParams {
    /// `wsa:To`: the endpoint URL.
    pub to: String,
    /// `w:MaxEnvelopeSize` in bytes.
    pub max_envelope_size: u32,
    /// `w:OperationTimeout`.
    pub operation_timeout: Duration,
    /// `w:Locale` / `p:DataLocale` language tag.
    pub locale: String,
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Formats a duration as an `xs:duration` (`PT20S`, `PT0.500S`).
pub fn xs_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("PT{}S", d.as_secs())
    } else {
        format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
    }
}

fn envelope(
    p: &EnvelopeParams,
    action: &str,
    message_id: Uuid,
    shell_id: Option<&str>,
    options: &[(&str, &str)],
    body: &str,
) -> String {
    let mut x = String::with_capacity(1500 + body.len());
    let _ = write!(
        x,
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<s:Envelope xmlns:s="{soap}" xmlns:a="{wsa}" xmlns:w="{wsman}" xmlns:p="{mswsman}" xmlns:rsp="{shell}">"#,
            "<s:Header>",
            "<a:To>{to}</a:To>",
            r#"<a:ReplyTo><a:Address s:mustUnderstand="true">{anon}</a:Address></a:ReplyTo>"#,
            r#"<a:Action s:mustUnderstand="true">{action}</a:Action>"#,
            r#"<w:MaxEnvelopeSize s:mustUnderstand="true">{max}</w:MaxEnvelopeSize>"#,
            "<a:MessageID>uuid:{id}</a:MessageID>",
            r#"<w:Locale xml:lang="{lang}" s:mustUnderstand="false"/>"#,
            r#"<p:DataLocale xml:lang="{lang}" s:mustUnderstand="false"/>"#,
            "<w:OperationTimeout>{timeout}</w:OperationTimeout>",
            r#"<w:ResourceURI s:mustUnderstand="true">{resource}</w:ResourceURI>"#,
        ),
        soap = ns::SOAP,
        wsa = ns::ADDRESSING,
        wsman = ns::WSMAN,
        mswsman = ns::MS_WSMAN,
        shell = ns::SHELL,
        to = xml_escape(&p.to),
        anon = ANONYMOUS,
        action = action,
        max = p.max_envelope_size,
        id = message_id,
        lang = xml_escape(&p.locale),
        timeout = xs_duration(p.operation_timeout),
        resource = RESOURCE_URI_CMD,
    );
    if let Some(shell_id) = shell_id {
        let _ = write!(
            x,
            r#"<w:SelectorSet><w:Selector Name="ShellId">{}</w:Selector></w:SelectorSet>"#,
            xml_escape(shell_id)
        );
    }
    if !options.is_empty() {
        x.push_str("<w:OptionSet>");
        for (name, value) in options {
            let _ = write!(
                x,
                r#"<w:Option Name="{}">{}</w:Option>"#,
                xml_escape(name),
                xml_escape(value)
            );
        }
        x.push_str("</w:OptionSet>");
    }
    x.push_str("</s:Header><s:Body>");
    x.push_str(body);
    x.push_str("</s:Body></s:Envelope>");
    x
}

/// `Create`: opens a `cmd` shell with stdin and stdout/stderr streams.
pub fn create_shell(p: &EnvelopeParams, codepage: u32, message_id: Uuid) -> String {
    let codepage = codepage.to_string();
    envelope(
        p,
        action::CREATE,
        message_id,
        None,
        &[("WINRS_NOPROFILE", "FALSE"), ("WINRS_CODEPAGE", &codepage)],
        "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>\
         <rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
    )
}

/// `Command`: starts `command` with one `rsp:Arguments` element per argument.
pub fn command(
    p: &EnvelopeParams,
    shell_id: &str,
    command: &str,
    args: &[String],
    message_id: Uuid,
) -> String {
    let mut body = format!(
        "<rsp:CommandLine><rsp:Command>{}</rsp:Command>",
        xml_escape(command)
    );
    for arg in args {
        let _ = write!(body, "<rsp:Arguments>{}</rsp:Arguments>", xml_escape(arg));
    }
    body.push_str("</rsp:CommandLine>");
    envelope(
        p,
        action::COMMAND,
        message_id,
        Some(shell_id),
        &[
            ("WINRS_CONSOLEMODE_STDIN", "TRUE"),
            ("WINRS_SKIP_CMD_SHELL", "FALSE"),
        ],
        &body,
    )
}

/// `Send`: one chunk of stdin, base64-encoded; `end` closes the stream.
pub fn send_stdin(
    p: &EnvelopeParams,
    shell_id: &str,
    command_id: &str,
    data: &[u8],
    end: bool,
    message_id: Uuid,
) -> String {
    let body = format!(
        r#"<rsp:Send><rsp:Stream Name="stdin" CommandId="{}" End="{}">{}</rsp:Stream></rsp:Send>"#,
        xml_escape(command_id),
        end,
        base64::engine::general_purpose::STANDARD.encode(data),
    );
    envelope(p, action::SEND, message_id, Some(shell_id), &[], &body)
}

/// `Receive`: long-polls stdout and stderr of `command_id`.
pub fn receive(p: &EnvelopeParams, shell_id: &str, command_id: &str, message_id: Uuid) -> String {
    let body = format!(
        r#"<rsp:Receive><rsp:DesiredStream CommandId="{}">stdout stderr</rsp:DesiredStream></rsp:Receive>"#,
        xml_escape(command_id)
    );
    envelope(p, action::RECEIVE, message_id, Some(shell_id), &[], &body)
}

/// `Signal`: sends `code` to `command_id`.
pub fn signal(
    p: &EnvelopeParams,
    shell_id: &str,
    command_id: &str,
    code: SignalCode,
    message_id: Uuid,
) -> String {
    let body = format!(
        r#"<rsp:Signal CommandId="{}"><rsp:Code>{}</rsp:Code></rsp:Signal>"#,
        xml_escape(command_id),
        code.uri()
    );
    envelope(p, action::SIGNAL, message_id, Some(shell_id), &[], &body)
}

/// `Delete`: closes the shell.
pub fn delete_shell(p: &EnvelopeParams, shell_id: &str, message_id: Uuid) -> String {
    envelope(p, action::DELETE, message_id, Some(shell_id), &[], "")
}

/// The largest stdin slice that fits one `Send` envelope of `max_envelope_size`
/// bytes after base64 expansion and the ~2 KiB of headers.
pub fn max_stdin_chunk(max_envelope_size: u32) -> usize {
    let room = (max_envelope_size as usize).saturating_sub(4096);
    (room / 4 * 3).max(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roxmltree::{Document, Node};

    fn params() -> EnvelopeParams {
        EnvelopeParams {
            to: "https://hv01:5986/wsman?x=1&y=2".into(),
            max_envelope_size: 512_000,
            operation_timeout: Duration::from_secs(20),
            locale: "en-US".into(),
        }
    }

    fn id() -> Uuid {
        Uuid::from_u128(0x1111_1111_1111_1111_1111_1111_1111_1111)
    }

    fn find<'a, 'i>(doc: &'a Document<'i>, namespace: &str, name: &str) -> Node<'a, 'i> {
        doc.descendants()
            .find(|n| n.has_tag_name((namespace, name)))
            .unwrap_or_else(|| panic!("missing {name}"))
    }

    fn text<'a>(doc: &'a Document<'_>, namespace: &str, name: &str) -> &'a str {
        find(doc, namespace, name).text().unwrap_or("")
    }

    fn options(doc: &Document<'_>) -> Vec<(String, String)> {
        doc.descendants()
            .filter(|n| n.has_tag_name((ns::WSMAN, "Option")))
            .map(|n| {
                (
                    n.attribute("Name").unwrap_or("").to_owned(),
                    n.text().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn create_has_headers_options_and_shell_body() {
        let xml = create_shell(&params(), 65001, id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(
            text(&doc, ns::ADDRESSING, "To"),
            "https://hv01:5986/wsman?x=1&y=2"
        );
        assert_eq!(text(&doc, ns::ADDRESSING, "Action"), action::CREATE);
        assert_eq!(
            text(&doc, ns::ADDRESSING, "MessageID"),
            "uuid:11111111-1111-1111-1111-111111111111"
        );
        assert_eq!(text(&doc, ns::ADDRESSING, "Address"), ANONYMOUS);
        assert_eq!(text(&doc, ns::WSMAN, "ResourceURI"), RESOURCE_URI_CMD);
        assert_eq!(text(&doc, ns::WSMAN, "MaxEnvelopeSize"), "512000");
        assert_eq!(text(&doc, ns::WSMAN, "OperationTimeout"), "PT20S");
        let locale = find(&doc, ns::WSMAN, "Locale");
        assert_eq!(
            locale.attribute(("http://www.w3.org/XML/1998/namespace", "lang")),
            Some("en-US")
        );
        assert_eq!(
            find(&doc, ns::ADDRESSING, "Action").attribute((ns::SOAP, "mustUnderstand")),
            Some("true")
        );
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name((ns::MS_WSMAN, "DataLocale"))));
        assert_eq!(
            options(&doc),
            vec![
                ("WINRS_NOPROFILE".to_owned(), "FALSE".to_owned()),
                ("WINRS_CODEPAGE".to_owned(), "65001".to_owned())
            ]
        );
        assert_eq!(text(&doc, ns::SHELL, "InputStreams"), "stdin");
        assert_eq!(text(&doc, ns::SHELL, "OutputStreams"), "stdout stderr");
        assert!(!doc
            .descendants()
            .any(|n| n.has_tag_name((ns::WSMAN, "SelectorSet"))));
    }

    #[test]
    fn command_escapes_and_lists_each_argument() {
        let args = vec!["-NoProfile".to_owned(), "a<b & \"c\"".to_owned()];
        let xml = command(&params(), "SHELL-1", "powershell.exe", &args, id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(text(&doc, ns::ADDRESSING, "Action"), action::COMMAND);
        let selector = find(&doc, ns::WSMAN, "Selector");
        assert_eq!(selector.attribute("Name"), Some("ShellId"));
        assert_eq!(selector.text(), Some("SHELL-1"));
        assert_eq!(
            options(&doc),
            vec![
                ("WINRS_CONSOLEMODE_STDIN".to_owned(), "TRUE".to_owned()),
                ("WINRS_SKIP_CMD_SHELL".to_owned(), "FALSE".to_owned())
            ]
        );
        assert_eq!(text(&doc, ns::SHELL, "Command"), "powershell.exe");
        let got: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name((ns::SHELL, "Arguments")))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(got, vec!["-NoProfile", "a<b & \"c\""]);
    }

    #[test]
    fn send_receive_signal_delete_shapes() {
        let p = params();
        let xml = send_stdin(&p, "S", "C", b"hello\r\n", true, id());
        let doc = Document::parse(&xml).unwrap();
        let stream = find(&doc, ns::SHELL, "Stream");
        assert_eq!(stream.attribute("Name"), Some("stdin"));
        assert_eq!(stream.attribute("CommandId"), Some("C"));
        assert_eq!(stream.attribute("End"), Some("true"));
        assert_eq!(stream.text(), Some("aGVsbG8NCg=="));
        let xml = send_stdin(&p, "S", "C", b"x", false, id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(
            find(&doc, ns::SHELL, "Stream").attribute("End"),
            Some("false")
        );

        let xml = receive(&p, "S", "C", id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(text(&doc, ns::ADDRESSING, "Action"), action::RECEIVE);
        let desired = find(&doc, ns::SHELL, "DesiredStream");
        assert_eq!(desired.attribute("CommandId"), Some("C"));
        assert_eq!(desired.text(), Some("stdout stderr"));

        let xml = signal(&p, "S", "C", SignalCode::Terminate, id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(
            find(&doc, ns::SHELL, "Signal").attribute("CommandId"),
            Some("C")
        );
        assert_eq!(text(&doc, ns::SHELL, "Code"), SignalCode::Terminate.uri());
        let xml = signal(&p, "S", "C", SignalCode::CtrlC, id());
        assert!(xml.contains("signal/ctrl_c"));

        let xml = delete_shell(&p, "S", id());
        let doc = Document::parse(&xml).unwrap();
        assert_eq!(text(&doc, ns::ADDRESSING, "Action"), action::DELETE);
        let body = find(&doc, ns::SOAP, "Body");
        assert!(body.first_element_child().is_none());
    }

    #[test]
    fn durations_and_chunk_sizes() {
        assert_eq!(xs_duration(Duration::from_secs(20)), "PT20S");
        assert_eq!(xs_duration(Duration::from_millis(1500)), "PT1.500S");
        assert_eq!(max_stdin_chunk(512_000), 380_928);
        assert_eq!(max_stdin_chunk(100), 1024);
    }
}
