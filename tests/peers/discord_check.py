#!/usr/bin/env python3
"""An outside check of the Discord bot in HTTP interactions mode.

Runs a recording fake of Discord's REST API (message posts answered with a fresh id, as Discord
answers), posts one interaction (a payload file in Discord's documented form) to the bot,
signed as Discord signs (Ed25519 over timestamp + body; `cryptography`, a dependency of
pyspnego), and waits until the bot has made a REST call whose body contains a text. When the bot answers
with a modal (a deploy form's first page), the peer fills it in with `--modal-values`
(a JSON object), then clicks the Submit button of the page's answer, as a user would. Also posts
the same body unsigned and with a stale timestamp, which must be refused with 401. Prints one
JSON object: the answers, every recorded call. Exit status 1 when the call never came.
"""
import argparse
import http.server
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

calls = []
lock = threading.Lock()
counter = itertools.count(1)


class Rest(http.server.BaseHTTPRequestHandler):
    def _handle(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("content-type") or ""
        with lock:
            calls.append({
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("authorization") or "",
                "content_type": ctype,
                "body": raw.decode("utf-8", "replace"),
            })
        data = json.dumps({"id": str(900000 + next(counter))}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _handle
    do_PATCH = _handle
    do_PUT = _handle

    def log_message(self, *args):
        pass


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("content-type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def signed(key, body, ts):
    sig = key.sign(str(ts).encode() + body).hex()
    return {"x-signature-ed25519": sig, "x-signature-timestamp": str(ts)}


def fill(a, key, interaction, modal, deadline):
    """Submits the modal with --modal-values (current label shape), then clicks Submit."""
    values = json.loads(a.modal_values)
    submit = dict(interaction)
    submit.update({"type": 5, "token": "MODAL_TOKEN", "id": "786008729715212341"})
    submit["data"] = {
        "custom_id": modal["data"]["custom_id"],
        "components": [
            {"type": 18, "id": i + 1, "component": {"type": 4, "custom_id": k, "value": v}}
            for i, (k, v) in enumerate(values.items())
        ],
    }
    raw = json.dumps(submit).encode()
    status, ack = post(a.bot, raw, signed(key, raw, int(time.time())))
    button = None
    while time.time() < deadline and button is None:
        with lock:
            for c in calls:
                if "/MODAL_TOKEN/messages/@original" in c["path"]:
                    for row in json.loads(c["body"]).get("components", []):
                        for b in row.get("components", []):
                            if b.get("label") == "Submit":
                                button = b["custom_id"]
        time.sleep(0.1)
    if button is None:
        return {"status": status, "ack": ack, "submit": None}
    click = dict(interaction)
    click.update({"type": 3, "token": "SUBMIT_TOKEN", "id": "786008729715212342"})
    click["data"] = {"custom_id": button, "component_type": 2}
    click["message"] = {"id": "900001", "channel_id": interaction.get("channel_id")}
    raw = json.dumps(click).encode()
    clicked = post(a.bot, raw, signed(key, raw, int(time.time())))
    return {"status": status, "ack": ack, "submit": clicked}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bot", required=True)
    p.add_argument("--seed-hex", required=True)
    p.add_argument("--recorder-port", type=int, required=True)
    p.add_argument("--payload", required=True)
    p.add_argument("--until-contains", required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--modal-values", default="{}")
    a = p.parse_args()
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(a.seed_hex))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.recorder_port), Rest)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    body = open(a.payload, "rb").read()
    deadline = time.time() + a.timeout
    # Wait for the bot to listen (a PING, signed).
    ping = json.dumps({"id": "1", "application_id": "1", "type": 1, "token": "t", "version": 1}).encode()
    pong = None
    while time.time() < deadline:
        try:
            pong = post(a.bot, ping, signed(key, ping, int(time.time())))
            break
        except OSError:
            time.sleep(0.2)
    report = {"pong": pong}
    report["unsigned"] = post(a.bot, body, {})[0]
    report["stale"] = post(a.bot, body, signed(key, body, int(time.time()) - 600))[0]
    status, answer = post(a.bot, body, signed(key, body, int(time.time())))
    report["status"], report["answer"] = status, answer
    try:
        first = json.loads(answer)
    except ValueError:
        first = {}
    if first.get("type") == 9:
        report["modal"] = first
        report["page"] = fill(a, key, json.loads(body), first, deadline)
    ok = False
    while time.time() < deadline:
        with lock:
            if any(a.until_contains in c["body"] for c in calls):
                ok = True
                break
        time.sleep(0.2)
    with lock:
        report["calls"] = list(calls)
    print(json.dumps(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
