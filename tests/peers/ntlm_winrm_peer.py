"""A small WinRM (WS-Management WinRS) endpoint that authenticates with NTLM and seals every
message, using pyspnego as an implementation independent of aetherv's Rust NTLM code.

pyspnego is the NTLM acceptor (credentials from NTLM_USER_FILE, lines `DOMAIN:user:password`)
and does the sealing (`wrap_winrm` / `unwrap_winrm`). The MS-WSMV `multipart/encrypted`
framing is parsed and written here, like Windows: the closing boundary follows the sealed
payload directly, without a CRLF.

Like a Windows host with AllowUnencrypted=false, a plain SOAP body on an authenticated
connection is refused with HTTP 400. NTLM state is kept per TCP connection.

The WinRS answers are canned but valid:
- `emit <n>`: n stdout lines `line <i>`, spread over several Receive responses
  (at most CHUNK_LINES lines each), exit code 0;
- `cat`: echoes the stdin received with Send (after End="true"), exit code 0;
- `fail <code>`: a CLIXML error on stderr and exit code <code>;
- anything else: `hello from peer` and exit code 0;
- `sleep`: never finishes (for Signal terminate);
- `forget-auth`: like the default, but afterwards the connection's NTLM context is dropped,
  so the next request gets a 401 and the client must authenticate again.

`GET /peer/stats` answers `<sealed requests> <connections> <auth failures> <open shells>
<authentications> <plain requests over tls>`.

With `--tls-cert/--tls-key` it serves HTTPS instead: like Windows, bodies then travel unsealed
after authentication, and pyspnego requires the client's NTLM channel bindings
(`tls-server-end-point`, RFC 5929, SHA-256 of the certificate: the test certificates are
signed with ECDSA/SHA-256) to match, i.e. Extended Protection with CbtHardeningLevel=Strict.

With `--kerberos` it is a Kerberos acceptor instead (pyspnego with the `gssapi` package over
MIT krb5): the service keys come from the keytab in KRB5_KTNAME (and the realm from
KRB5_CONFIG); a raw Kerberos AP-REQ under `Negotiate` (or `Kerberos`) is accepted in one round
trip and the `200` answer carries the AP-REP (mutual authentication). Sealing is pyspnego's
`wrap_winrm` (gss_wrap_iov HEADER | DATA | PADDING) and `unwrap_winrm`. `GET /peer/stats` then
also reports the last authenticated client principal as a seventh field.

Usage: python ntlm_winrm_peer.py (--users-file FILE | --kerberos) [--port 0] [--tls-cert PEM --tls-key PEM]
Prints `LISTENING <port>` on stdout once ready; serves until killed or stdin closes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import spnego
from spnego.channel_bindings import GssChannelBindings

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_NS = NS["rsp"]
BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CONTENT_TYPE = 'multipart/encrypted;protocol="%s";boundary="Encrypted Boundary"' % PROTOCOL
CHUNK_LINES = 7
CHANNEL_BINDINGS: GssChannelBindings | None = None  # set in TLS mode
KERBEROS = False  # --kerberos

STATE_LOCK = threading.Lock()
SHELLS: dict[str, dict[str, dict]] = {}
STATS = {"sealed_requests": 0, "connections": 0, "auth_failures": 0, "authentications": 0, "plain_tls_requests": 0, "client": "-"}


def envelope(action: str, relates: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<s:Envelope xml:lang="en-US" xmlns:s="%s" xmlns:a="%s" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:w="%s" xmlns:rsp="%s"><s:Header><a:Action>%s</a:Action><a:MessageID>uuid:%s</a:MessageID>'
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>%s</a:RelatesTo>"
        "</s:Header><s:Body>%s</s:Body></s:Envelope>"
        % (NS["s"], NS["a"], NS["w"], NS["rsp"], action, str(uuid.uuid4()).upper(), relates, body)
    ).encode()


def fault(relates: str, subcode: str, reason: str) -> bytes:
    return envelope(
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
        relates,
        '<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>%s</s:Value></s:Subcode></s:Code>'
        '<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason></s:Fault>' % (subcode, reason),
    )


def clixml(text: str) -> bytes:
    return (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">%s_x000D__x000A_</S></Objs>' % text
    ).encode()


def seal(ctx, plain: bytes) -> bytes:
    wrapped = ctx.wrap_winrm(plain)
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(plain)).encode() + b"\r\n"
        + BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<I", len(wrapped.header)) + wrapped.header + wrapped.data
        + BOUNDARY + b"--\r\n"
    )


def unseal(ctx, body: bytes) -> bytes:
    if not body.startswith(BOUNDARY + b"\r\n"):
        raise ValueError("no leading boundary")
    head_end = body.index(BOUNDARY + b"\r\n", len(BOUNDARY))
    header = body[len(BOUNDARY) + 2 : head_end].decode()
    if PROTOCOL not in header:
        raise ValueError("wrong protocol")
    length = int(header.split("Length=")[1].strip())
    part = body[head_end + len(BOUNDARY) + 2 :]
    prefix = b"\tContent-Type: application/octet-stream\r\n"
    if not part.startswith(prefix):
        raise ValueError("no octet-stream part")
    part = part[len(prefix) :]
    if not part.endswith(BOUNDARY + b"--\r\n"):
        raise ValueError("no closing boundary")
    part = part[: -len(BOUNDARY + b"--\r\n")]
    sig_len = struct.unpack("<I", part[:4])[0]
    sig, data = part[4 : 4 + sig_len], part[4 + sig_len :]
    if len(data) != length:
        # A CRLF (or anything else) between payload and closing boundary lands here.
        raise ValueError("sealed payload length %d != %d" % (len(data), length))
    plain = ctx.unwrap_winrm(sig, data)
    if len(plain) != length:
        raise ValueError("length mismatch")
    return plain


def handle_soap(xml: bytes) -> bytes:
    root = ET.fromstring(xml)
    action = root.findtext("s:Header/a:Action", "", NS)
    relates = root.findtext("s:Header/a:MessageID", "", NS)
    shell_id = None
    for sel in root.findall("s:Header/w:SelectorSet/w:Selector", NS):
        if sel.get("Name") == "ShellId":
            shell_id = sel.text
    body = root.find("s:Body", NS)
    op = action.rsplit("/", 1)[-1]
    with STATE_LOCK:
        if op == "Create":
            sid = str(uuid.uuid4()).upper()
            SHELLS[sid] = {}
            return envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
                relates,
                '<x:ResourceCreated><a:Address>http://peer:5985/wsman</a:Address><a:ReferenceParameters>'
                "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
                '<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                "</x:ResourceCreated><rsp:Shell><rsp:ShellId>%s</rsp:ShellId></rsp:Shell>" % (sid, sid),
            )
        if shell_id not in SHELLS:
            return fault(relates, "w:InvalidSelectors", "The request for the Windows Remote Shell with ShellId %s failed because the shell was not found on the server." % shell_id)
        commands = SHELLS[shell_id]
        if op == "Delete":
            del SHELLS[shell_id]
            return envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", relates, "")
        if op == "Command":
            line = body.find("rsp:CommandLine", NS)
            command = line.findtext("rsp:Command", "", NS)
            args = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
            cid = line.get("CommandId") or str(uuid.uuid4()).upper()
            commands[cid] = {"command": command, "args": args, "stdin": b"", "stdin_done": False, "pending": None}
            return envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
                relates,
                "<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>" % cid,
            )
        if op == "Send":
            for stream in body.findall("rsp:Send/rsp:Stream", NS):
                cmd = commands.get(stream.get("CommandId"))
                if cmd is None:
                    continue
                cmd["stdin"] += base64.b64decode(stream.text or "")
                if stream.get("End") == "true":
                    cmd["stdin_done"] = True
            return envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse", relates, "<rsp:SendResponse/>"
            )
        if op == "Signal":
            cid = body.find("rsp:Signal", NS).get("CommandId")
            commands.pop(cid, None)
            return envelope(
                "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse", relates, "<rsp:SignalResponse/>"
            )
        if op == "Receive":
            cid = body.find("rsp:Receive/rsp:DesiredStream", NS).get("CommandId")
            cmd = commands.get(cid)
            if cmd is None:
                return fault(relates, "w:InvalidParameter", "unknown command")
            return receive(relates, cid, cmd)
    return fault(relates, "a:ActionNotSupported", "unsupported action")


def output_for(cmd: dict) -> list[tuple[bytes, bytes]] | None:
    """All (stdout, stderr) chunks of a command, or None while it cannot finish yet."""
    command = (cmd["command"] + " " + " ".join(cmd["args"])).strip().split()
    name = command[0] if command else ""
    if name == "sleep":
        return None
    if name == "emit":
        n = int(command[1])
        lines = ["line %d\r\n" % i for i in range(1, n + 1)]
        return [("".join(lines[i : i + CHUNK_LINES]).encode(), b"") for i in range(0, n, CHUNK_LINES)] + [(b"", b"", 0)]
    if name == "cat":
        if not cmd["stdin_done"]:
            return None
        return [(cmd["stdin"], b""), (b"", b"", 0)]
    if name == "fail":
        return [(b"", clixml("peer failure")), (b"", b"", int(command[1]))]
    return [(b"hello from peer\r\n", b""), (b"", b"", 0)]


def receive(relates: str, cid: str, cmd: dict) -> bytes:
    if cmd["pending"] is None:
        chunks = output_for(cmd)
        if chunks is None:
            time.sleep(0.2)
            return fault(relates, "w:TimedOut", "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.")
        cmd["pending"] = chunks
    chunk = cmd["pending"].pop(0)
    streams = ""
    if len(chunk) == 2:
        out, err = chunk
        if out:
            streams += '<rsp:Stream Name="stdout" CommandId="%s">%s</rsp:Stream>' % (cid, base64.b64encode(out).decode())
        if err:
            streams += '<rsp:Stream Name="stderr" CommandId="%s">%s</rsp:Stream>' % (cid, base64.b64encode(err).decode())
        state = '<rsp:CommandState CommandId="%s" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"/>' % cid
    else:
        streams = '<rsp:Stream Name="stdout" CommandId="%s" End="true"/><rsp:Stream Name="stderr" CommandId="%s" End="true"/>' % (cid, cid)
        state = (
            '<rsp:CommandState CommandId="%s" State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done">'
            "<rsp:ExitCode>%d</rsp:ExitCode></rsp:CommandState>" % (cid, chunk[2])
        )
    return envelope(
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
        relates,
        "<rsp:ReceiveResponse>%s%s</rsp:ReceiveResponse>" % (streams, state),
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.ctx = None
        self.authenticated = False
        with STATE_LOCK:
            STATS["connections"] += 1

    def log_message(self, fmt: str, *args) -> None:  # quiet
        pass

    def reply(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for k, v in headers or []:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client abandoned the exchange (a deadline fired mid-Receive).
            self.close_connection = True

    def challenge(self) -> None:
        second = "Kerberos" if KERBEROS else "NTLM"
        self.reply(401, headers=[("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", second)])

    def do_GET(self) -> None:
        if self.path == "/peer/stats":
            with STATE_LOCK:
                body = ("%(sealed_requests)d %(connections)d %(auth_failures)d " % STATS).encode()
                body += ("%d %d %d" % (len(SHELLS), STATS["authentications"], STATS["plain_tls_requests"])).encode()
                if KERBEROS:
                    body += (" %s" % STATS["client"]).encode()
            self.reply(200, body, [("Content-Type", "text/plain")])
        else:
            self.reply(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        auth = self.headers.get("Authorization")
        mutual: list[tuple[str, str]] = []
        if auth and KERBEROS:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() not in ("negotiate", "kerberos") or not token:
                self.challenge()
                return
            # Every Authorization header starts a new context (Kerberos needs one round trip).
            self.authenticated = False
            try:
                self.ctx = spnego.server(protocol="kerberos", channel_bindings=CHANNEL_BINDINGS)
                out = self.ctx.step(base64.b64decode(token))
            except Exception as exc:
                print("kerberos accept failed: %s" % exc, file=sys.stderr, flush=True)
                with STATE_LOCK:
                    STATS["auth_failures"] += 1
                self.ctx = None
                self.challenge()
                return
            if not self.ctx.complete:
                self.ctx = None
                self.challenge()
                return
            self.authenticated = True
            with STATE_LOCK:
                STATS["authentications"] += 1
                STATS["client"] = self.ctx.client_principal or "?"
            if out:
                mutual = [("WWW-Authenticate", "%s %s" % (scheme, base64.b64encode(out).decode()))]
        elif auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() not in ("negotiate", "ntlm") or not token:
                self.challenge()
                return
            raw = base64.b64decode(token)
            if raw[8:12] == b"\x01\x00\x00\x00" or self.ctx is None:
                self.ctx = spnego.server(protocol="ntlm", channel_bindings=CHANNEL_BINDINGS)
                self.authenticated = False
            try:
                out = self.ctx.step(raw)
            except Exception:
                with STATE_LOCK:
                    STATS["auth_failures"] += 1
                self.ctx = None
                self.authenticated = False
                self.challenge()
                return
            if not self.ctx.complete:
                self.reply(401, headers=[("WWW-Authenticate", "%s %s" % (scheme, base64.b64encode(out or b"").decode()))])
                return
            self.authenticated = True
            with STATE_LOCK:
                STATS["authentications"] += 1
        if not self.authenticated:
            self.challenge()
            return
        if not body:
            self.reply(200, headers=mutual)
            return
        ctype = self.headers.get("Content-Type", "")
        if CHANNEL_BINDINGS is not None and ctype.startswith("application/soap+xml"):
            # HTTPS: TLS protects the body.
            with STATE_LOCK:
                STATS["plain_tls_requests"] += 1
            answer = handle_soap(body)
            status = 500 if b"<s:Fault>" in answer else 200
            self.reply(status, answer, [("Content-Type", "application/soap+xml;charset=UTF-8")])
            return
        if not ctype.startswith("multipart/encrypted") or PROTOCOL not in ctype:
            # Like AllowUnencrypted=false on Windows.
            self.reply(400, b"unencrypted request refused", [("Content-Type", "text/plain")])
            return
        try:
            plain = unseal(self.ctx, body)
        except Exception as exc:  # bad framing or signature
            self.reply(400, ("bad encrypted body: %s" % exc).encode(), [("Content-Type", "text/plain")])
            return
        with STATE_LOCK:
            STATS["sealed_requests"] += 1
        answer = handle_soap(plain)
        status = 500 if b"<s:Fault>" in answer else 200
        self.reply(status, seal(self.ctx, answer), [("Content-Type", CONTENT_TYPE)])
        if b"<rsp:Command>forget-auth</rsp:Command>" in plain:
            self.ctx = None
            self.authenticated = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users-file")
    parser.add_argument("--kerberos", action="store_true", help="accept Kerberos (keytab in KRB5_KTNAME)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--bindings-cert", help="compute the expected channel bindings from this certificate instead (negative tests)")
    args = parser.parse_args()
    global KERBEROS
    KERBEROS = args.kerberos
    if not KERBEROS:
        if not args.users_file:
            parser.error("--users-file is required without --kerberos")
        os.environ["NTLM_USER_FILE"] = args.users_file
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        global CHANNEL_BINDINGS
        with open(args.bindings_cert or args.tls_cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        CHANNEL_BINDINGS = GssChannelBindings(application_data=b"tls-server-end-point:" + hashlib.sha256(der).digest())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("LISTENING %d" % server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Exit when the parent closes our stdin (the test process ended).
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
