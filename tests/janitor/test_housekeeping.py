"""The running janitor sweeps orphans once an hour, and a failing sweep stops nothing."""

from __future__ import annotations

import logging
import time

import pytest

from geoetl.platform import Platform
from geoetl.workers import ORPHAN_SWEEP_META, make_janitor, sweep_orphans_hourly
from tests.janitor.conftest import OLD, put


def test_the_janitor_sweeps_once_an_hour(platform: Platform) -> None:
    first = put(platform, "silver/cogs/c/first.tif", 100, hours_ago=OLD)
    janitor = make_janitor(platform)
    janitor.run_once()
    assert not platform.objects.exists(first)
    meta = platform.store.get_meta(ORPHAN_SWEEP_META)
    assert (meta["done"], meta["objects"], meta["bytes"]) == (True, 1, 100)

    second = put(platform, "silver/cogs/c/second.tif", 100, hours_ago=OLD)
    janitor.run_once()  # within the hour: no sweep
    assert platform.objects.exists(second)
    assert sweep_orphans_hourly(platform, now=time.time() + 3601)
    assert not platform.objects.exists(second)


def test_the_janitor_never_sweeps_bronze(platform: Platform) -> None:
    source = put(platform, "bronze/abc/old.tif", 100, hours_ago=10 * 365 * 24)
    make_janitor(platform).run_once()
    assert platform.objects.exists(source)


def test_a_failing_sweep_is_logged_and_the_pass_goes_on(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(prefix: str) -> list[object]:
        raise OSError("the store is away")

    monkeypatch.setattr(platform.objects, "list_info", broken)
    with caplog.at_level(logging.ERROR, logger="geoetl.workers"):
        report = make_janitor(platform).run_once()
    assert report.at is not None
    assert platform.store.get_meta("janitor") is not None  # the pass finished
    assert "the orphan sweep failed" in caplog.text
