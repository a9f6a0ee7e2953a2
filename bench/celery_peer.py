"""The Celery peer of the job benchmark (bench/compare.py, issue 17): one task that stands for
an agent operation. It sleeps MS milliseconds and returns; it records its start and end time
(time.time(), the driver's clock: same machine) as one appended line per task in a file of
its own process, so the driver can measure publish -> task start and the makespan.

Deployed the standard way by the driver: one `celery -A celery_peer worker -Q <queue> -c 1`
(prefork pool, --prefetch-multiplier 1) per host queue, acks late, durable queues.

Configured from the environment (set by the driver):
  CELERY_PEER_BROKER      AMQP URL
  CELERY_PEER_PREFIX      name prefix of the exchange and queues (bench-xxxxxxxx)
  CELERY_PEER_QUEUE       the host this worker serves (its queue is <prefix>.celery.<host>)
  CELERY_PEER_QUEUE_TYPE  quorum (default) or classic
  CELERY_PEER_LOG_DIR     directory of the per-process record files
"""

import os
import time

from celery import Celery
from kombu import Exchange, Queue

PREFIX = os.environ.get("CELERY_PEER_PREFIX", "bench")
HOST = os.environ.get("CELERY_PEER_QUEUE", "hv01")
QUEUE_TYPE = os.environ.get("CELERY_PEER_QUEUE_TYPE", "quorum")
LOG_DIR = os.environ.get("CELERY_PEER_LOG_DIR", "/tmp")

app = Celery("celery_peer", broker=os.environ.get("CELERY_PEER_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))

exchange = Exchange(f"{PREFIX}.celery", type="direct", durable=True)
queue_args = {"x-queue-type": "quorum"} if QUEUE_TYPE == "quorum" else {}

app.conf.update(
    task_queues=[
        Queue(f"{PREFIX}.celery.{HOST}", exchange, routing_key=HOST, durable=True,
              queue_arguments=queue_args)
    ],
    task_default_queue_type=QUEUE_TYPE,
    worker_detect_quorum_queues=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    # Celery's own exchanges under the run's prefix, so the run can delete them afterwards.
    event_exchange=f"{PREFIX}.celeryev",
    control_exchange=f"{PREFIX}.ctl",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_out = None


def _record(line):
    global _out
    if _out is None:
        _out = os.open(os.path.join(LOG_DIR, f"{os.getpid()}.rec"),
                       os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_out, line.encode())


@app.task(bind=True, name="celery_peer.op")
def op(self, ms, host):
    started = time.time()
    if ms:
        time.sleep(ms / 1000.0)
    ended = time.time()
    _record(f"{self.request.id} {started:.6f} {ended:.6f} {host}\n")
