"""The Celery executor (``GEOETL_EXECUTOR=celery``): a broker tells workers which task ids to claim.

Celery only dispatches. The job store commits, then :class:`CeleryDispatcher` sends
``geoetl.run`` messages naming runnable task ids (``{"task_ids": […], "queue": …}``) to
the Celery queue of the tasks' stage queue; a Celery worker process claims exactly those
ids in SQL (``Runner.run_once(task_ids=…)``) and skips the ones no longer queued
(cancelled, done, taken by another worker, or not due yet): a message about them is
dropped. The database's leases, heartbeats, fencing attempts and the janitor stay the
source of truth:

- A message names one task, except when many become runnable at once (a fan-out stage,
  a janitor's re-dispatch): then up to :data:`MAX_IDS_PER_MESSAGE` ids share a message,
  at least :data:`SPREAD` messages per queue. Measured on two cores, Celery's prefork
  pool with early acks and a prefetch of one moves 600-900 no-op messages a second, which
  would bound the engine's throughput below its target; with shared messages a process
  claims the ids in growing batches while tasks are fast, and after a slow task sends the
  ids it has not claimed back to the broker one per message, so other processes share
  slow stages as they would with one message per task.
- Messages are acknowledged *early* (``task_acks_late=False``) with a prefetch of one per
  process, so a broker's visibility timeout (Redis, SQS) or lock duration (Azure Service
  Bus) can never deliver a running task again: a message is acked when a process starts
  on it, and a redelivered one finds its task claimed already.
- A message lost on the way (broker outage, worker killed between ack and claim) leaves its
  task queued; ``geoetl janitor`` re-dispatches tasks queued longer than
  ``GEOETL_REDISPATCH_AFTER_SECONDS`` and re-queues (and so re-dispatches) expired leases. A
  Celery deployment therefore always runs ``geoetl janitor`` (one per machine is fine: it
  also cleans that machine's scratch folder).
- A task that becomes runnable later (a retry's backoff) is not sent with a Celery ETA: an
  ETA message sits unacknowledged in a worker's memory (past a Redis visibility timeout or a
  Service Bus lock it is delivered again, and it is lost with that worker's memory). The
  dispatcher keeps it on a timer thread and sends it when due; if that process ends first,
  the janitor re-dispatches it. Machines' clocks must agree (NTP): a message read before
  its task is due, by the reader's clock, is dropped and left to the janitor.

Queues: geoetl's stage queue ``raster`` is the Celery queue ``geoetl.raster`` (prefix
:data:`QUEUE_PREFIX`, so geoetl can share a broker, or a virtual host, with other Celery
applications), routed by name through the default direct exchange. ``geoetl worker
--queues raster,vector --concurrency N`` consumes only those queues, and its processes
claim only tasks of those queues, so a misrouted message is dropped, never run.

Brokers: any kombu transport URL in ``GEOETL_BROKER_URL``. Redis (``redis://host:6379/0``)
and RabbitMQ (``amqp://user:pw@host:5672//``) are tested. Transport options that matter,
all of them only for messages waiting in a prefetch slot (milliseconds with early acks):

- Redis: ``visibility_timeout`` (set to an hour here) is irrelevant for correctness.
- SQS (``sqs://`` with the standard AWS credential chain and region): ``visibility_timeout``
  (kombu's default 1800 s), ``wait_time_seconds``, ``region``, ``queue_name_prefix``; SQS
  names may not contain a dot and kombu turns ``geoetl.raster`` into ``geoetl-raster``.
- Azure Service Bus (``azureservicebus://POLICY:KEY@NAMESPACE``): ``peek_lock_seconds``
  (the lock duration, kombu's default 60 s, at most 300), ``use_lock_renewal`` (kombu's
  default off is right: no message is held while its task runs), ``wait_time_seconds``,
  ``queue_name_prefix``.

kombu's defaults suit early acks on every transport, so the URL is usually all a
deployment configures; ``GEOETL_BROKER_TRANSPORT_OPTIONS`` (JSON) sets others, e.g.
``{"predefined_queues": {…}}`` for SQS without ListQueues rights, or ``{"peek_lock_seconds":
120}`` for Service Bus.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery  # type: ignore[import-untyped]
from celery import signals as celery_signals
from kombu.exceptions import OperationalError as KombuOperationalError

from geoetl.engine.db import retry_transient
from geoetl.engine.dispatch import Runnable
from geoetl.engine.runner import FAST_TASK_SECONDS, MAX_BATCH
from geoetl.settings import Settings

if TYPE_CHECKING:
    from geoetl.engine.runner import Runner

log = logging.getLogger(__name__)

TASK_NAME = "geoetl.run"
QUEUE_PREFIX = "geoetl."
BUILT_IN_QUEUES = ("default", "raster", "vector")
"""Queues a worker serves when none are named (with any other a workflow declares)."""

# Redis: how long a delivered message may stay unacknowledged before another consumer
# gets it. With early acks that is the time between delivery and a process starting on
# it, so the value only has to be long; it plays no part in correctness.
REDIS_VISIBILITY_TIMEOUT_S = 3600
# A broker that does not answer: each dispatch gives it this long, then the janitor's
# re-dispatch takes over (a submit must not hang on a broker outage).
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0.0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# A large dispatch (a fan-out stage, a janitor's re-dispatch) goes out as at least SPREAD
# messages per queue of at most MAX_IDS_PER_MESSAGE task ids each; fewer tasks, one each.
MAX_IDS_PER_MESSAGE = 64
SPREAD = 16
# After a failed send, dispatches within this many seconds do not try the broker again
# (each try may wait for connection timeouts): their tasks are left to the janitor.
OUTAGE_RETRY_S = 2.0
# Tasks due within this many seconds are sent now (they are claimable by the time a
# worker reads the message); later ones wait on the dispatcher's timer.
DUE_SLACK_S = 0.0


def messages(tasks: Iterable[Runnable]) -> list[tuple[str, list[str]]]:
    """The ``(queue, task ids)`` of each message that tells workers of ``tasks``.

    One id per message for a few tasks; a large stage's ids go several to a message (at
    most :data:`MAX_IDS_PER_MESSAGE`, and at least :data:`SPREAD` messages per queue) so
    the broker's per-message cost does not bound the engine's throughput.
    """
    by_queue: dict[str, list[str]] = {}
    for task in tasks:
        by_queue.setdefault(task.queue, []).append(task.task_id)
    out: list[tuple[str, list[str]]] = []
    for queue, ids in by_queue.items():
        per = max(1, min(MAX_IDS_PER_MESSAGE, len(ids) // SPREAD))
        out.extend((queue, ids[i : i + per]) for i in range(0, len(ids), per))
    return out


def celery_queue(queue: str) -> str:
    """The Celery queue that carries the messages of the stage queue ``queue``."""
    return f"{QUEUE_PREFIX}{queue}"


def make_celery_app(
    settings: Settings,
    *,
    queues: Sequence[str] | None = None,
    transport_options: Mapping[str, Any] | None = None,
) -> Any:
    """A Celery app on ``settings.broker_url`` with the ``geoetl.run`` task registered.

    No result backend (results live in the database), JSON messages, early acks with a
    prefetch of one. ``queues`` are the stage queues this process's workers claim from
    (``None``: any); ``transport_options`` go over ``settings.broker_transport_options``.
    """
    if not settings.broker_url:
        raise ValueError("the Celery executor needs GEOETL_BROKER_URL")
    app = Celery("geoetl", broker=settings.broker_url, set_as_current=False)
    options: dict[str, Any] = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S}
    options.update(settings.broker_transport_options)
    options.update(transport_options or {})
    app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=False,
        task_acks_on_failure_or_timeout=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=celery_queue("default"),
        task_create_missing_queues=True,
        task_publish_retry=True,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        task_send_sent_event=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,  # a worker waits for its broker, forever
        broker_transport_options=options,
        # Cancels running tasks with *late* acks when the broker connection drops; there are
        # none (early acks), and True silences Celery's warning about the coming default.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )
    runners = _ProcessRunner(settings, list(queues) if queues else None)
    app.geoetl_runners = runners

    @app.task(name=TASK_NAME, shared=False, ignore_result=True, acks_late=False, typing=False)  # type: ignore[untyped-decorator]
    def run(
        task_ids: list[str] | None = None, queue: str = "default", task_id: str | None = None
    ) -> None:
        """Claim the named tasks and run them; those no longer queued are skipped."""
        runners.run([*(task_ids or ()), *([task_id] if task_id else [])], queue)

    return app


class _ProcessRunner:
    """The Runner of this Celery worker process, built on its first message."""

    def __init__(self, settings: Settings, queues: list[str] | None) -> None:
        self.settings = settings
        self.queues = queues
        self._runner: Runner | None = None
        self._pid = 0
        self._size = 1  # tasks per claim: doubles while they are fast
        self._lock = threading.Lock()

    def get(self) -> Runner:
        """The runner of the calling process (a forked child never reuses its parent's)."""
        with self._lock:
            if self._runner is None or self._pid != os.getpid():
                from geoetl.workers import open_runner

                worker_id = f"{socket.gethostname()}:{os.getpid()}:celery"
                # The message is acked already: wait for the database rather than lose it.
                self._runner = retry_transient(
                    lambda: open_runner(self.settings, worker_id, self.queues),
                    what=f"worker {worker_id}: starting",
                    logger=log,
                )
                self._pid = os.getpid()
            return self._runner

    def run(self, task_ids: Sequence[str], queue: str) -> int:
        """Claim and run ``task_ids`` (of ``queue``); how many were claimed (0: dropped).

        Claims grow 1, 2, 4, … up to the runner's batch limit while tasks are fast (as the
        local runner's batches do, carried from one message to the next), and fall back
        to 1 after a slow one; the ids not claimed yet then go back to the broker one
        message each, so other processes share the slow ones.
        """
        runner = self.get()
        remaining = list(task_ids)
        claimed = 0
        while remaining:
            chunk, remaining = remaining[: self._size], remaining[self._size :]
            started = time.monotonic()
            got = runner.run_once(task_ids=chunk)
            claimed += got
            if not got:
                continue
            if (time.monotonic() - started) / got < FAST_TASK_SECONDS:
                self._size = min(self._size * 2, MAX_BATCH)
                continue
            self._size = 1
            if remaining:
                now = time.time()
                runner.store.dispatcher.dispatch([Runnable(t, queue, now) for t in remaining])
                break
        if not claimed:
            log.debug("tasks %s not queued (or not due, or not ours): dropped", task_ids[:3])
        return claimed

    def close(self) -> None:
        """Stop this process's runner (its heartbeat, its platform's connections)."""
        with self._lock:
            runner, self._runner = self._runner, None
            if runner is not None and self._pid == os.getpid():
                runner.close()


class CeleryDispatcher:
    """Sends ``geoetl.run`` messages naming runnable tasks to their queue's Celery queue.

    One task per message, or several for a large dispatch (:func:`messages`).

    Never raises into the job store: a broker that cannot be reached is logged once per
    outage, is not tried again for :data:`OUTAGE_RETRY_S` (a submit does not wait on
    connection timeouts), and the janitor re-dispatches what was not sent. Tasks not yet
    due (retry backoff) are sent by a timer thread when they are.
    """

    def __init__(self, settings: Settings, *, app: Any = None) -> None:
        self.app = app if app is not None else make_celery_app(settings)
        self._send_lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._later = _Later(self._send)
        conn = self.app.connection_for_write()
        try:
            # What a transport raises when its broker is away; kombu wraps them in
            # OperationalError once its publish retries are spent.
            self._errors: tuple[type[BaseException], ...] = (
                OSError,
                KombuOperationalError,
                *conn.connection_errors,
                *conn.channel_errors,
            )
        finally:
            conn.release()

    def dispatch(self, tasks: Sequence[Runnable]) -> None:
        """Send each due task's message now and the others when they are due."""
        now = time.time()
        due = [t for t in tasks if t.available_at <= now + DUE_SLACK_S]
        later = [t for t in tasks if t.available_at > now + DUE_SLACK_S]
        if later:
            self._later.add(later)
        if due:
            self._send(due)

    def close(self) -> None:
        """Stop the timer (tasks still waiting on it are left to the janitor) and disconnect."""
        left = self._later.stop()
        if left:
            log.info("%d task(s) not due yet are left to the janitor's re-dispatch", left)
        self.app.close()

    def _send(self, tasks: Iterable[Runnable]) -> int:
        """Publish the messages on one producer connection; how many were sent."""
        sent = 0
        batch = list(tasks)
        with self._send_lock:
            if self._down_since is not None and time.monotonic() < self._retry_at:
                return 0  # the broker was away a moment ago: left to the janitor
            try:
                with self.app.producer_or_acquire() as producer:
                    for queue, ids in messages(batch):
                        self.app.send_task(
                            TASK_NAME,
                            kwargs={"task_ids": ids, "queue": queue},
                            queue=celery_queue(queue),
                            producer=producer,
                            ignore_result=True,
                        )
                        sent += len(ids)
            except self._errors as exc:
                self._retry_at = time.monotonic() + OUTAGE_RETRY_S
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "broker unreachable (%s: %s): %d task message(s) not sent; the "
                        "janitor re-dispatches them once it is back",
                        type(exc).__name__,
                        exc,
                        len(batch) - sent,
                    )
                return sent
            if self._down_since is not None:
                log.warning(
                    "broker reachable again after %.0f s", time.monotonic() - self._down_since
                )
                self._down_since = None
        return sent


class _Later:
    """A timer thread that sends tasks when their ``available_at`` comes."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self._heap: list[tuple[float, int, Runnable]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add(self, tasks: Iterable[Runnable]) -> None:
        with self._cond:
            if self._stopped:
                return
            for task in tasks:
                heapq.heappush(self._heap, (task.available_at, next(self._seq), task))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="geoetl-celery-later", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def stop(self) -> int:
        """Stop the thread; how many tasks were still waiting."""
        with self._cond:
            self._stopped = True
            left = len(self._heap)
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return left

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0][0] > time.time() + DUE_SLACK_S
                ):
                    wait = self._heap[0][0] - time.time() if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                now = time.time()
                due: list[Runnable] = []
                while self._heap and self._heap[0][0] <= now + DUE_SLACK_S:
                    due.append(heapq.heappop(self._heap)[2])
            self._send(due)


def worker_queues() -> list[str]:
    """Every stage queue the built-in and registered workflows declare."""
    from geoetl.workflows import default_registry

    names = set(BUILT_IN_QUEUES)
    for workflow in default_registry():
        names.update(stage.queue for stage in workflow.stages)
    return sorted(names)


def run_celery_worker(settings: Settings, queues: list[str] | None, concurrency: int) -> None:
    """Run a Celery worker of ``concurrency`` processes on ``queues`` until SIGTERM/SIGINT.

    Each process builds one Runner on its first message and claims exactly the tasks a
    message names. A first SIGTERM or SIGINT stops after the running tasks (Celery's warm
    shutdown). Leases that run out (a killed worker) and lost messages are recovered by
    ``geoetl janitor``, which a Celery deployment always runs.
    """
    serving = queues or worker_queues()
    app = make_celery_app(settings, queues=serving)
    runners: _ProcessRunner = app.geoetl_runners

    def _close_runner(**_: Any) -> None:
        runners.close()

    # Closes the process's database connections and heartbeat when Celery stops a child.
    celery_signals.worker_process_shutdown.connect(_close_runner, weak=False)
    host = socket.gethostname()
    worker = app.Worker(
        hostname=f"geoetl-{os.getpid()}@{host}",
        pool_cls="prefork",
        concurrency=concurrency,
        queues=[celery_queue(q) for q in serving],
        prefetch_multiplier=1,
        optimization="fair",
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    )
    log.info("celery worker %s: %d process(es) on queues %s", worker.hostname, concurrency, serving)
    worker.start()
