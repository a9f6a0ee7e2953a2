#!/usr/bin/env python3
"""An outside check of the Slack bot in HTTP mode.

Runs a recording fake of Slack's Web API (answering as Slack does), posts one slash command
(a payload file in Slack's documented form, with its `text` replaced) to the bot, signed as
Slack signs requests, and waits until the bot has made a Web API call that matches. Prints
one JSON object: the acknowledgement, every recorded call and the uploaded files.
Exit status 1 when the call never came.
"""
import argparse
import hashlib
import hmac
import http.server
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

calls = []
uploads = {}
lock = threading.Lock()
counter = itertools.count(1)


class WebApi(http.server.BaseHTTPRequestHandler):
    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _answer(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        raw = self._body()
        if url.path.startswith("/upload/"):
            with lock:
                uploads[url.path.rsplit("/", 1)[1]] = raw.decode("utf-8", "replace")
            self._answer({"ok": True})
            return
        method = url.path.rsplit("/", 1)[-1]
        ctype = self.headers.get("content-type") or ""
        if raw and ctype.startswith("application/json"):
            body = json.loads(raw)
        else:
            body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode() or url.query).items()}
        ts = "1700000000.%06d" % next(counter)
        with lock:
            calls.append({"method": method, "auth": self.headers.get("authorization"),
                          "content_type": ctype, "body": body, "ts": ts})
        if method == "chat.postMessage":
            self._answer({"ok": True, "channel": body.get("channel"), "ts": ts,
                          "message": {"ts": ts, "text": body.get("text", "")}})
        elif method == "chat.update":
            self._answer({"ok": True, "channel": body.get("channel"), "ts": body.get("ts"),
                          "text": body.get("text", ""),
                          "message": {"ts": body.get("ts"), "text": body.get("text", "")}})
        elif method == "files.getUploadURLExternal":
            fid = "F%06d" % next(counter)
            port = self.server.server_address[1]
            self._answer({"ok": True, "file_id": fid,
                          "upload_url": "http://127.0.0.1:%d/upload/%s" % (port, fid)})
        elif method == "files.completeUploadExternal":
            self._answer({"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")}
                                                for f in body.get("files", [])]})
        else:
            self._answer({"ok": True})

    do_POST = _handle
    do_GET = _handle

    def log_message(self, *args):
        pass


def sign(secret, ts, body):
    mac = hmac.new(secret.encode(), ("v0:%s:%s" % (ts, body)).encode(), hashlib.sha256)
    return "v0=" + mac.hexdigest()


def post(url, secret, body, deadline):
    while True:
        ts = str(int(time.time()))
        req = urllib.request.Request(url, data=body.encode(), headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": sign(secret, ts, body),
        })
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bot", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--recorder-port", type=int, required=True)
    p.add_argument("--payload", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--until-method", required=True)
    p.add_argument("--until-contains", required=True)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.recorder_port), WebApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.time() + a.timeout
    form = urllib.parse.parse_qs(open(a.payload).read().strip(), keep_blank_values=True)
    form = {k: v[0] for k, v in form.items()}
    form["text"] = a.text
    status, ack = post(a.bot, a.secret, urllib.parse.urlencode(form), deadline)
    found = False
    asked = 1
    while time.time() < deadline and not found:
        with lock:
            found = any(c["method"] == a.until_method and a.until_contains in json.dumps(c["body"])
                        for c in calls)
            # A bot that has just started is still replaying its event stream and says so:
            # ask again, as a user would.
            waiting = sum("catching up" in json.dumps(c["body"]) for c in calls)
        if not found and waiting >= asked and asked < 10:
            time.sleep(0.5)
            status, ack = post(a.bot, a.secret, urllib.parse.urlencode(form), deadline)
            asked += 1
        time.sleep(0.1)
    time.sleep(1.5)  # the edits and the upload that follow the final message
    with lock:
        print(json.dumps({"status": status, "ack": ack, "calls": calls, "uploads": uploads}))
    sys.exit(0 if found else 1)


if __name__ == "__main__":
    main()
