"""An independent AMQP producer: builds a job envelope using only schemas/json/, validates it with
jsonschema, and publishes it with pika (mandatory + publisher confirms).

usage: publish_job.py AMQP_URL PREFIX HOST   -> prints the job id
"""
import datetime
import json
import pathlib
import sys
import uuid

import jsonschema
import pika

root = pathlib.Path(__file__).resolve().parents[2]
schema = json.loads((root / "schemas/json/job-envelope.schema.json").read_text())

url, prefix, host = sys.argv[1], sys.argv[2], sys.argv[3]
kinds = [k["const"] for k in schema["$defs"]["JobKind"]["oneOf"]]
assert "noop" in kinds, kinds

job = {
    "v": schema["properties"]["v"]["maximum"],
    "job_id": str(uuid.uuid4()),
    "kind": "noop",
    "target": {"host": host},
    "spec": {"from": "pika"},
    "requested_by": {"platform": "amqp", "user_id": "pika-producer"},
    "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
}
jsonschema.validate(job, schema, format_checker=jsonschema.FormatChecker())

conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.confirm_delivery()
ch.basic_publish(
    exchange=f"{prefix}.jobs",
    routing_key=host,
    body=json.dumps(job).encode(),
    properties=pika.BasicProperties(content_type="application/json", delivery_mode=2),
    mandatory=True,
)
conn.close()
print(job["job_id"])
