"""Real brokers for the Celery executor's tests: the shared Redis and RabbitMQ, private Redis.

The machine's Redis (6379) and RabbitMQ (5672) are shared with other people: tests never
stop them. Each test gets a Redis database of its own (flushed first) or, on RabbitMQ, a
virtual host of its own; a test that restarts its broker starts a ``redis-server`` of its
own on a free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from geoetl.celery_executor import celery_queue
from geoetl.settings import Settings
from tests.conftest import IN_CI, free_port, geoetl_cmd, settings_env

REDIS_HOST = os.environ.get("GEOETL_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("GEOETL_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def reachable(url: str) -> str | None:
    """None when the broker at ``url`` answers, else why not."""
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return None
    except Exception as exc:  # any transport's connection error
        return f"{type(exc).__name__}: {exc}"


def queue_depth(broker_url: str, queue: str) -> int:
    """Messages waiting in the Celery queue of the stage queue ``queue``."""
    name = celery_queue(queue)
    with Connection(broker_url) as conn:
        declared = Queue(name, Exchange(name), routing_key=name)(conn.default_channel)
        return int(declared.queue_declare().message_count)


@contextlib.contextmanager
def rabbitmq_vhost(base: str = RABBITMQ_URL) -> Iterator[str]:
    """A virtual host of its own on the shared RabbitMQ (guest may use it); its URL."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield f"{base}//"  # the default virtual host; queues are purged by the tests
        return
    vhost = f"geoetl-test-{uuid.uuid4().hex[:10]}"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"{base}/{vhost}"
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)


class RedisServer:
    """A private ``redis-server`` on a free port, which a test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            message = "redis-server is not installed (a private Redis the test may restart)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def start_worker(
    settings: Settings, log: Path, *args: str, group: int | None = None
) -> subprocess.Popen[bytes]:
    """``geoetl worker ARGS`` in a process group of its own (or in ``group``)."""
    return _start(settings, log, "worker", *args, group=group)


def start_janitor(
    settings: Settings, log: Path, *args: str, group: int | None = None
) -> subprocess.Popen[bytes]:
    """``geoetl janitor ARGS`` in a process group of its own (or in ``group``)."""
    return _start(settings, log, "janitor", *args, group=group)


def _start(settings: Settings, log: Path, *args: str, group: int | None) -> subprocess.Popen[bytes]:
    env = settings_env(settings)
    # settings_env writes str(value); the settings read dicts and lists as JSON.
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, dict | list):
            env[f"GEOETL_{name.upper()}"] = json.dumps(value)
    with log.open("ab") as handle:
        # A new process group (this session, so others may join it) unless one is given:
        # killpg then stops the command with its children.
        return subprocess.Popen(
            geoetl_cmd(*args),
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            process_group=0 if group is None else group,
        )


def stop_group(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``proc`` (a warm shutdown), SIGKILL what outlives it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"process group {proc.pid} ignored SIGTERM; killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
