"""An independent AMQP producer that knows only schemas/json/ and docs/amqp.md.

usage:
  request_job.py AMQP_URL PREFIX USER REQUEST_JSON [--follow]
      Validates the request against job-request.schema.json, publishes it to PREFIX.requests
      with user_id=USER, a reply queue and a correlation id, and prints every reply
      (`reply {json}`, each checked against request-reply.schema.json) until the request is
      settled; with --follow, then prints the job's events (`event TYPE`) from
      PREFIX.events.stream until the job ends (the last one with its payload).
      USER `-` sends no user_id.
  request_job.py AMQP_URL PREFIX USER --to-jobs HOST
      Publishes a job envelope straight to PREFIX.jobs and prints `refused CODE` when
      RabbitMQ refuses it, `published` otherwise.
"""
import datetime
import json
import pathlib
import sys
import time
import uuid

import jsonschema
import pika

root = pathlib.Path(__file__).resolve().parents[2]


def schema(name):
    return json.loads((root / "schemas/json" / name).read_text())


def say(*parts):
    print(*parts, flush=True)


url, prefix, user = sys.argv[1], sys.argv[2], sys.argv[3]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()

if sys.argv[4] == "--to-jobs":
    host = sys.argv[5]
    job = {
        "v": 1,
        "job_id": str(uuid.uuid4()),
        "kind": "noop",
        "target": {"host": host},
        "spec": {},
        "requested_by": {"platform": "amqp", "user_id": user},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    try:
        ch.basic_publish(
            exchange=f"{prefix}.jobs",
            routing_key=host,
            body=json.dumps(job).encode(),
            properties=pika.BasicProperties(content_type="application/json", user_id=user),
            mandatory=True,
        )
        say("published")
    except pika.exceptions.ChannelClosedByBroker as e:
        say("refused", e.reply_code)
    sys.exit(0)

request = json.loads(sys.argv[4])
follow = "--follow" in sys.argv[5:]
jsonschema.validate(request, schema("job-request.schema.json"))
reply_schema = schema("request-reply.schema.json")

reply_queue = ch.queue_declare(queue="", exclusive=True).method.queue
correlation_id = str(uuid.uuid4())
ch.basic_publish(
    exchange=f"{prefix}.requests",
    routing_key="",
    body=json.dumps(request).encode(),
    properties=pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        user_id=None if user == "-" else user,
        reply_to=reply_queue,
        correlation_id=correlation_id,
    ),
    mandatory=True,
)

deadline = time.monotonic() + 90


def messages(queue, **kwargs):
    """(properties, body) of each message on queue, acked; exits after the deadline."""
    for method, props, body in ch.consume(queue, inactivity_timeout=1, **kwargs):
        if time.monotonic() > deadline:
            say("timeout")
            sys.exit(2)
        if method is None:
            continue
        ch.basic_ack(method.delivery_tag)
        yield props, body


job_id = None
runs = False
for props, body in messages(reply_queue):
    reply = json.loads(body)
    jsonschema.validate(reply, reply_schema)
    assert props.correlation_id == correlation_id, props.correlation_id
    say("reply", json.dumps(reply, sort_keys=True))
    status = reply["status"]
    job_id = reply.get("job_id", job_id)
    if status == "accepted" and reply["awaiting_approval"]:
        continue
    runs = status in ("accepted", "approved")
    break
ch.cancel()

if follow and runs:
    ch.basic_qos(prefetch_count=100)
    stream = f"{prefix}.events.stream"
    for _props, body in messages(stream, arguments={"x-stream-offset": "first"}):
        event = json.loads(body)
        if event.get("job_id") != job_id:
            continue
        if event["type"] in ("job.succeeded", "job.failed", "job.cancelled"):
            say("event", event["type"], json.dumps(event.get("payload"), sort_keys=True))
            break
        say("event", event["type"])
conn.close()
