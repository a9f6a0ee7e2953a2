#!/usr/bin/env python3
"""An approver in Slack, checked from outside the Slack bot in HTTP mode.

Runs the recording fake of Slack's Web API of slack_check.py, waits for the bot to post an
approval message (a message with an `approve` button), clicks it as USER (a `block_actions`
payload in Slack's documented form, signed as Slack signs requests), then waits until the bot
posts or edits a message that contains UNTIL. Prints one JSON object: the approval message,
the click's answer and every recorded call. Exit status 1 when something never came.
"""
import argparse
import http.server
import json
import pathlib
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import slack_check  # noqa: E402


def approve_button(body):
    for block in body.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == "approve":
                return element
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bot", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--recorder-port", type=int, required=True)
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--until", required=True)
    p.add_argument("--timeout", type=float, default=90)
    a = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.recorder_port), slack_check.WebApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.time() + a.timeout
    approval = None
    while time.time() < deadline and approval is None:
        with slack_check.lock:
            approval = next((c for c in slack_check.calls if c["method"] == "chat.postMessage"
                             and approve_button(c["body"])), None)
        time.sleep(0.1)
    click = None
    found = False
    if approval is not None:
        button = approve_button(approval["body"])
        channel = approval["body"].get("channel")
        payload = {
            "type": "block_actions", "team": {"id": "T0FAKE"},
            "user": {"id": a.user, "team_id": "T0FAKE"}, "api_app_id": "A0FAKE",
            "trigger_id": "trigger.click",
            "container": {"type": "message", "message_ts": approval["ts"], "channel_id": channel},
            "channel": {"id": channel, "name": "ops"},
            "message": {"ts": approval["ts"], "text": approval["body"].get("text", "")},
            "actions": [{"type": "button", "action_id": "approve",
                         "block_id": button.get("block_id", "approval"),
                         "value": button.get("value"), "action_ts": "%.6f" % time.time()}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        click = slack_check.post(a.bot, a.secret, body, deadline)
        while time.time() < deadline and not found:
            with slack_check.lock:
                found = any(c["method"] in ("chat.postMessage", "chat.update")
                            and a.until in json.dumps(c["body"]) for c in slack_check.calls)
            time.sleep(0.1)
    with slack_check.lock:
        print(json.dumps({"approval": approval, "click": click, "calls": slack_check.calls}))
    sys.exit(0 if found else 1)


if __name__ == "__main__":
    main()
