//! Pure, incremental decoders for WinRS output streams.
//!
//! WinRS delivers stdout and stderr as base64 chunks whose boundaries are
//! arbitrary: a UTF-8 sequence, a line ending, the `#< CLIXML` sentinel, an XML
//! element or an `_xHHHH_` escape can all be split between two Receive
//! responses. Every decoder here is a small state machine fed with chunks; for
//! any split of the input it yields exactly the lines the unsplit input yields
//! (property-tested below). No I/O, no async, no allocation beyond the pending
//! partial line.
//!
//! Line rules (upstream reference §10 case 11): a BOM (`U+FEFF`) is dropped,
//! `\r\n` and `\r` count as `\n`, only complete non-blank lines are emitted,
//! and the unterminated rest is emitted by `finish`.
//!
//! CLIXML rules (reference §10 case 12): stderr of `powershell.exe` starts with
//! `#< CLIXML`, then an `<Objs>` document. The text of every `<S>` element is
//! `_xHHHH_`-decoded and line-split, one `<S>` never continuing the previous
//! one's line. Progress records (`<Obj S="progress">`) are dropped. Text after
//! `</Objs>` is plain text again (or the next `#< CLIXML` document, when it
//! starts with the sentinel). Stderr without the sentinel is plain text.

/// The first bytes of a CLIXML-serialised PowerShell stream.
pub const CLIXML_SENTINEL: &str = "#< CLIXML";

/// Incremental UTF-8 decoder: keeps an incomplete trailing sequence for the
/// next chunk and replaces invalid bytes with `U+FFFD`.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes as much of `pending + bytes` as is complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.pending.len());
        let mut input: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(input) {
                Ok(text) => {
                    out.push_str(text);
                    input = &[];
                    break;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(std::str::from_utf8(&input[..valid]).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            input = &input[valid + bad..];
                        }
                        None => {
                            // An incomplete sequence at the end: wait for more bytes.
                            input = &input[valid..];
                            break;
                        }
                    }
                }
            }
        }
        self.pending = input.to_vec();
        out
    }

    /// Decodes whatever is left (an incomplete sequence becomes `U+FFFD`).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Splits text into complete, non-blank lines (see the module rules).
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    partial: String,
}

impl LineBuffer {
    /// Appends `text`, pushing every line it completes onto `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<String>) {
        let mut rest = text;
        while let Some(pos) = rest.find(['\r', '\n']) {
            self.append(&rest[..pos]);
            self.end_line(out);
            rest = &rest[pos + 1..];
        }
        self.append(rest);
    }

    /// Ends the current line (if it is not blank) even without a line break.
    pub fn end_line(&mut self, out: &mut Vec<String>) {
        let line = std::mem::take(&mut self.partial);
        // A `\r\n` pair ends a line and then an empty one, which is dropped here,
        // so CR, LF and CRLF need no cross-chunk state.
        if !line.trim().is_empty() {
            out.push(line);
        }
    }

    /// Emits the unterminated rest, if any.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        self.end_line(out);
    }

    fn append(&mut self, text: &str) {
        if text.contains('\u{feff}') {
            self.partial
                .extend(text.chars().filter(|c| *c != '\u{feff}'));
        } else {
            self.partial.push_str(text);
        }
    }
}

/// The lines one decoding step emits.
fn emitted(step: impl FnOnce(&mut Vec<String>)) -> Vec<String> {
    let mut out = Vec::new();
    step(&mut out);
    out
}

/// Decoder for a plain UTF-8 stream (stdout with codepage 65001).
#[derive(Debug, Default, Clone)]
pub struct StdoutDecoder {
    utf8: Utf8Decoder,
    lines: LineBuffer,
}

impl StdoutDecoder {
    /// Feeds one chunk of raw stream bytes and returns the lines it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let text = self.utf8.push(bytes);
        emitted(|out| self.lines.push(&text, out))
    }

    /// Ends the stream and returns the remaining line, if any.
    pub fn finish(&mut self) -> Vec<String> {
        let text = self.utf8.finish();
        emitted(|out| {
            self.lines.push(&text, out);
            self.lines.finish(out);
        })
    }
}

#[derive(Debug, Clone, Default)]
enum StderrMode {
    /// Not enough text yet to tell whether the stream starts with the sentinel.
    #[default]
    Detect,
    /// Inside the CLIXML document.
    Clixml,
    /// Plain text (no sentinel, or after `</Objs>`).
    Plain,
}

/// Decoder for stderr: CLIXML when the stream starts with [`CLIXML_SENTINEL`],
/// plain UTF-8 lines otherwise.
#[derive(Debug, Default, Clone)]
pub struct StderrDecoder {
    utf8: Utf8Decoder,
    mode: StderrMode,
    detect: String,
    scanner: ClixmlScanner,
    lines: LineBuffer,
}

impl StderrDecoder {
    /// Feeds one chunk of raw stream bytes and returns the lines it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let text = self.utf8.push(bytes);
        emitted(|out| self.push_text(&text, out))
    }

    /// Ends the stream and returns the remaining lines. An unterminated CLIXML
    /// element is dropped (complete `<S>` elements were already emitted).
    pub fn finish(&mut self) -> Vec<String> {
        let text = self.utf8.finish();
        emitted(|out| {
            self.push_text(&text, out);
            if matches!(self.mode, StderrMode::Detect) {
                let pending = std::mem::take(&mut self.detect);
                self.lines.push(&pending, out);
            }
            self.lines.finish(out);
        })
    }

    fn push_text(&mut self, text: &str, out: &mut Vec<String>) {
        match self.mode {
            StderrMode::Detect => {
                self.detect.push_str(text);
                // Leading line breaks never form a line, so they may precede the sentinel.
                let probe = self.detect.trim_start_matches(['\u{feff}', '\r', '\n']);
                if let Some(rest) = probe.strip_prefix(CLIXML_SENTINEL) {
                    let rest = rest.to_owned();
                    self.detect.clear();
                    self.mode = StderrMode::Clixml;
                    self.push_clixml(&rest, out);
                } else if !CLIXML_SENTINEL.starts_with(probe) {
                    let pending = std::mem::take(&mut self.detect);
                    self.mode = StderrMode::Plain;
                    self.lines.push(&pending, out);
                }
            }
            StderrMode::Clixml => self.push_clixml(text, out),
            StderrMode::Plain => self.lines.push(text, out),
        }
    }

    fn push_clixml(&mut self, text: &str, out: &mut Vec<String>) {
        if let Some(after) = self.scanner.push(text, &mut self.lines, out) {
            // Another `powershell.exe` may follow with its own CLIXML document.
            self.mode = StderrMode::Detect;
            self.push_text(&after, out);
        }
    }
}

/// Finds complete top-level children of `<Objs>` in a growing buffer.
#[derive(Debug, Default, Clone)]
struct ClixmlScanner {
    /// Unconsumed text; when `depth <= 1` it starts at a `<` (or is empty).
    buf: String,
    /// Where to resume looking for the next tag.
    scan: usize,
    /// Element depth: 0 outside `<Objs>`, 1 inside it, 2+ inside a child.
    depth: usize,
}

impl ClixmlScanner {
    /// Consumes `text`; returns the text after `</Objs>` once the document ends.
    fn push(
        &mut self,
        text: &str,
        lines: &mut LineBuffer,
        out: &mut Vec<String>,
    ) -> Option<String> {
        self.buf.push_str(text);
        loop {
            if self.depth <= 1 {
                // Between elements: whitespace (and the sentinel's line break) is noise.
                match self.buf[self.scan..].find('<') {
                    Some(i) => {
                        self.buf.drain(..self.scan + i);
                        self.scan = 0;
                    }
                    None => {
                        self.buf.clear();
                        self.scan = 0;
                        return None;
                    }
                }
            }
            let start = match self.buf[self.scan..].find('<') {
                Some(i) => self.scan + i,
                None => {
                    self.scan = self.buf.len();
                    return None;
                }
            };
            let Some(len) = tag_len(&self.buf[start..]) else {
                self.scan = start;
                return None;
            };
            let end = start + len;
            let tag = &self.buf[start..end];
            self.scan = end;
            if tag.starts_with("</") {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => {
                        let after = self.buf[end..].to_owned();
                        self.buf.clear();
                        self.scan = 0;
                        return Some(after);
                    }
                    1 => self.emit_child(end, lines, out),
                    _ => {}
                }
            } else if tag.starts_with("<?") || tag.starts_with("<!") {
                if self.depth <= 1 {
                    self.buf.drain(..end);
                    self.scan = 0;
                }
            } else if tag.ends_with("/>") {
                match self.depth {
                    0 => {
                        // `<Objs/>`: an empty document.
                        let after = self.buf[end..].to_owned();
                        self.buf.clear();
                        self.scan = 0;
                        return Some(after);
                    }
                    1 => self.emit_child(end, lines, out),
                    _ => {}
                }
            } else {
                self.depth += 1;
                if self.depth == 1 {
                    // The `<Objs ...>` start tag itself carries nothing.
                    self.buf.drain(..end);
                    self.scan = 0;
                }
            }
        }
    }

    /// `buf[..end]` is one complete child of `<Objs>`: emit its `<S>` texts.
    fn emit_child(&mut self, end: usize, lines: &mut LineBuffer, out: &mut Vec<String>) {
        let element: String = self.buf.drain(..end).collect();
        self.scan = 0;
        match roxmltree::Document::parse(&element) {
            Ok(doc) => {
                let root = doc.root_element();
                if root.tag_name().name() == "Obj" && root.attribute("S") == Some("progress") {
                    return;
                }
                for node in root.descendants() {
                    if node.is_element() && node.tag_name().name() == "S" {
                        let text: String = node
                            .children()
                            .filter(|c| c.is_text())
                            .filter_map(|c| c.text())
                            .collect();
                        lines.push(&decode_clixml_escapes(&text), out);
                        lines.end_line(out);
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "skipping an unparsable clixml element");
            }
        }
    }
}

/// Length of the tag starting at `s[0] == '<'` up to and including its `>`,
/// ignoring `>` inside quoted attribute values; `None` if it is incomplete.
fn tag_len(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i + 1),
            (None, _) => {}
        }
    }
    None
}

/// Decodes the `_xHHHH_` escapes PowerShell's serializer uses for characters
/// XML cannot carry (`_x000D__x000A_` is CRLF; `_x005F_` is a literal `_`).
/// UTF-16 surrogate pairs are combined; invalid or lone escapes stay as they are.
pub fn decode_clixml_escapes(text: &str) -> String {
    if !text.contains("_x") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("_x") {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let Some(unit) = escape_at(rest) else {
            out.push('_');
            rest = &rest[1..];
            continue;
        };
        if (0xD800..0xDC00).contains(&unit) {
            if let Some(low) = escape_at(&rest[7..]).filter(|u| (0xDC00..0xE000).contains(u)) {
                let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                if let Some(c) = char::from_u32(code) {
                    out.push(c);
                    rest = &rest[14..];
                    continue;
                }
            }
        }
        match char::from_u32(u32::from(unit)) {
            Some(c) => {
                out.push(c);
                rest = &rest[7..];
            }
            None => {
                // A lone surrogate: keep the escape text.
                out.push('_');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The UTF-16 unit of an `_xHHHH_` escape at the start of `s`.
fn escape_at(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() < 7 || &b[..2] != b"_x" || b[6] != b'_' {
        return None;
    }
    let hex = std::str::from_utf8(&b[2..6]).ok()?;
    if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` to a fresh decoder (`push`, then `finish`) and collects its lines.
    fn decode_all<D: Default>(
        chunks: &[&[u8]],
        push: fn(&mut D, &[u8]) -> Vec<String>,
        finish: fn(&mut D) -> Vec<String>,
    ) -> Vec<String> {
        let mut dec = D::default();
        let mut lines: Vec<String> = chunks.iter().flat_map(|c| push(&mut dec, c)).collect();
        lines.extend(finish(&mut dec));
        lines
    }

    fn stdout_lines(chunks: &[&[u8]]) -> Vec<String> {
        decode_all(chunks, StdoutDecoder::push, StdoutDecoder::finish)
    }

    fn stderr_lines(chunks: &[&[u8]]) -> Vec<String> {
        decode_all(chunks, StderrDecoder::push, StderrDecoder::finish)
    }

    /// The property of every decoder: splitting the input anywhere changes no line.
    fn split_anywhere_changes_nothing(
        lines: fn(&[&[u8]]) -> Vec<String>,
        input: &[u8],
        points: &[usize],
    ) -> Result<Vec<String>, TestCaseError> {
        let expected = lines(&[input]);
        let chunks = split_at_points(input, points);
        prop_assert_eq!(&lines(&chunks), &expected);
        Ok(expected)
    }

    fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in cuts {
            chunks.push(&input[last..cut]);
            last = cut;
        }
        chunks.push(&input[last..]);
        chunks
    }

    #[test]
    fn line_buffer_joins_a_line_split_across_chunks() {
        assert_eq!(
            stdout_lines(&[b"Split pay", b"load line\n"]),
            vec!["Split payload line"]
        );
    }

    #[test]
    fn line_buffer_emits_each_complete_line() {
        assert_eq!(
            stdout_lines(&[b"Line one\n", b"Line two\nAfter XML line\n"]),
            vec!["Line one", "Line two", "After XML line"]
        );
    }

    #[test]
    fn line_buffer_normalises_crlf_and_cr_drops_bom_and_blank_lines() {
        assert_eq!(
            stdout_lines(&["\u{feff}a\r\nb\rc\n\n   \r\nd".as_bytes()]),
            vec!["a", "b", "c", "d"]
        );
    }

    #[test]
    fn line_buffer_holds_the_unterminated_rest_until_finish() {
        let mut dec = StdoutDecoder::default();
        assert_eq!(dec.push(b"one\ntwo"), vec!["one"]);
        assert!(dec.push(b" and more").is_empty());
        assert_eq!(dec.finish(), vec!["two and more"]);
    }

    #[test]
    fn utf8_sequence_split_across_chunks_is_reassembled() {
        let bytes = "größe €\n".as_bytes();
        assert_eq!(
            stdout_lines(&[&bytes[..3], &bytes[3..9], &bytes[9..]]),
            vec!["größe €"]
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(
            stdout_lines(&[b"a\xffb\n", b"\xe2\x82"]),
            vec!["a\u{fffd}b", "\u{fffd}"]
        );
    }

    #[test]
    fn clixml_upstream_case_with_trailing_plain_line() {
        let lines = stderr_lines(&[
            b"#< CLIXML\r\n",
            b"<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj><S>Line one</S><S>Line two</S></Obj></Objs>\r\nAfter XML line\n",
        ]);
        assert_eq!(lines, vec!["Line one", "Line two", "After XML line"]);
    }

    #[test]
    fn clixml_sentinel_split_across_chunks() {
        let lines = stderr_lines(&[
            b"#< CLI",
            b"XML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">Split payload</S></Objs>",
        ]);
        assert_eq!(lines, vec!["Split payload"]);
    }

    #[test]
    fn clixml_error_records_are_unescaped_and_line_split() {
        let lines = stderr_lines(&[
            b"#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">",
            b"<S S=\"Error\">first_x000D__x000A_second &amp; &lt;third&gt;_x000D__x000A_</S>",
            b"<Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"><T>System.Management.Automation.PSCustomObject</T></TN><MS><S N=\"x\">hidden</S></MS></Obj>",
            b"<S S=\"warning\">warn _x</S><S S=\"Error\">x_x0041_</S></Objs>",
        ]);
        assert_eq!(lines, vec!["first", "second & <third>", "warn _x", "xA"]);
    }

    #[test]
    fn a_second_clixml_document_after_the_first_is_decoded_too() {
        let doc = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">one</S></Objs>";
        let input = format!("{doc}\r\n{}\r\nplain\r\n", doc.replace("one", "two"));
        assert_eq!(
            stderr_lines(&[input.as_bytes()]),
            vec!["one", "two", "plain"]
        );
    }

    #[test]
    fn plain_stderr_passes_through_as_lines() {
        assert_eq!(
            stderr_lines(&[b"'foo' is not recognized\r\n", b"as a command"]),
            vec!["'foo' is not recognized", "as a command"]
        );
        assert_eq!(stderr_lines(&[b"#<"]), vec!["#<"]);
        assert_eq!(stderr_lines(&[b"#< CLIX", b"Y\n"]), vec!["#< CLIXY"]);
    }

    #[test]
    fn escape_decoding_rules() {
        assert_eq!(decode_clixml_escapes("a_x000D__x000A_b"), "a\r\nb");
        assert_eq!(decode_clixml_escapes("_x005F_x000D_"), "_x000D_");
        assert_eq!(
            decode_clixml_escapes("bad _x00ZZ_ _x12_ _x"),
            "bad _x00ZZ_ _x12_ _x"
        );
        assert_eq!(decode_clixml_escapes("_xD83D__xDE00_!"), "\u{1F600}!");
        assert_eq!(decode_clixml_escapes("lone _xD83D_"), "lone _xD83D_");
        assert_eq!(decode_clixml_escapes("tab_x0009_end"), "tab\tend");
    }

    #[test]
    fn tag_len_ignores_gt_inside_quotes() {
        assert_eq!(tag_len("<S N=\"a>b\">x"), Some(11));
        assert_eq!(tag_len("<S N='a"), None);
    }

    const CLIXML_SAMPLE: &str = "\u{feff}#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><Obj S=\"progress\" RefId=\"0\"><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\"><AV>Preparing modules</AV></PR></MS></Obj><S S=\"Error\">Write-Error \"größe\" : Error_x000D__x000A_</S><S S=\"Error\">    + CategoryInfo : NotSpecified: (:) [Write-Error], WriteErrorExcep _x000D__x000A_</S><S S=\"Error\">   tion_x000D__x000A_</S><S S=\"Error\"> _x000D__x000A_</S><S S=\"Error\">emoji _xD83D__xDE00_ &amp; _x005F_x000A_</S></Objs>\r\ntrailing\r\nplain\r";

    proptest! {
        #[test]
        fn stderr_any_split_gives_the_unsplit_lines(points in proptest::collection::vec(any::<usize>(), 0..12)) {
            let expected = split_anywhere_changes_nothing(stderr_lines, CLIXML_SAMPLE.as_bytes(), &points)?;
            prop_assert_eq!(
                &expected,
                &vec![
                    "Write-Error \"größe\" : Error".to_owned(),
                    "    + CategoryInfo : NotSpecified: (:) [Write-Error], WriteErrorExcep ".to_owned(),
                    "   tion".to_owned(),
                    "emoji \u{1F600} & _x000A_".to_owned(),
                    "trailing".to_owned(),
                    "plain".to_owned(),
                ]
            );
        }

        #[test]
        fn stdout_any_split_gives_the_unsplit_lines(
            text in "[a-zé€\\r\\n \u{feff}]{0,60}",
            points in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            split_anywhere_changes_nothing(stdout_lines, text.as_bytes(), &points)?;
        }

        #[test]
        fn stderr_arbitrary_text_any_split_gives_the_unsplit_lines(
            text in "(#< CLIXML|<Objs>|</Objs>|<S>|</S>|_x000A_|_x00|[a-z<>\"\\r\\n ]){0,30}",
            points in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            split_anywhere_changes_nothing(stderr_lines, text.as_bytes(), &points)?;
        }
    }
}
