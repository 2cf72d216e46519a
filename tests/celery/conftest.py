"""Fixtures for the Celery executor: a real broker (Redis or RabbitMQ), PostgreSQL, workers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.celery.brokers import (
    RABBITMQ_URL,
    REDIS_HOST,
    rabbitmq_vhost,
    reachable,
    start_janitor,
    start_worker,
    stop_group,
)
from tests.conftest import IN_CI

# The shared Redis's database for these tests (flushed before each one).
REDIS_TEST_DB = 14


def _require(url: str, what: str) -> None:
    """Fail (CI) or skip when the broker does not answer."""
    problem = reachable(url)
    if problem:
        message = f"{what} at {url} unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker of each kind, empty: a Redis database of its own, or a RabbitMQ vhost."""
    if request.param == "redis":
        url = f"{REDIS_HOST}/{REDIS_TEST_DB}"
        _require(url, "Redis")
        client = redis.Redis.from_url(url)
        client.flushdb()
        yield url
        client.flushdb()
        client.close()
    else:
        _require(f"{RABBITMQ_URL}//", "RabbitMQ")
        with rabbitmq_vhost() as url:
            yield url


def celery_settings_for(home: Path, database_url: str, broker_url: str, **extra: Any) -> Settings:
    """Settings of a Celery deployment with short leases, retries and re-dispatch."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "executor": "celery",
        "broker_url": broker_url,
        "lease_seconds": 3.0,
        "heartbeat_seconds": 0.5,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "redispatch_after_seconds": 2.0,
        "janitor_interval_seconds": 0.5,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture
def celery_settings(home: Path, pg_database_url: str, broker_url: str) -> Settings:
    """A Celery deployment on PostgreSQL and ``broker_url``."""
    return celery_settings_for(home, pg_database_url, broker_url)


@pytest.fixture
def celery_platform(celery_settings: Settings) -> Iterator[Platform]:
    """The submitting side: its job store dispatches through Celery."""
    p = Platform.from_settings(celery_settings)
    yield p
    p.close()


class Processes:
    """``geoetl worker``/``janitor`` subprocesses of one test, each in its own group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def worker(self, settings: Settings, *args: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"worker-{len(self.started)}.log"
        proc = start_worker(settings, log, *args)
        self.started.append((proc, log))
        return proc

    def janitor(self, settings: Settings, *args: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"janitor-{len(self.started)}.log"
        proc = start_janitor(settings, log, *args)
        self.started.append((proc, log))
        return proc

    def stop_all(self) -> None:
        for proc, log in self.started:
            stop_group(proc)
            print(f"----- {log.name} (exit {proc.returncode})\n{log.read_text(errors='replace')}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Subprocesses started by the test; all stopped afterwards (their logs printed)."""
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
