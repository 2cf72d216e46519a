"""``geoetl janitor --orphans``: a table and totals, or the report as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from geoetl.cli.main import app
from geoetl.errors import InputError
from geoetl.platform import Platform
from geoetl.settings import Settings
from tests.cli.helpers import geoetl
from tests.conftest import settings_env
from tests.janitor.conftest import active_job, put, with_settings

MIB = 1024 * 1024


@pytest.fixture
def no_grace(settings: Settings) -> Settings:
    """Settings whose orphans count at once (GEOETL_ORPHAN_GRACE_HOURS=0)."""
    return with_settings(settings, orphan_grace_hours=0)


@pytest.fixture
def swept(no_grace: Settings) -> Iterator[Platform]:
    """A platform with 3 MiB in two orphans and an active job's staged output."""
    p = Platform.from_settings(no_grace)
    put(p, "silver/cogs/c/stray.tif", 2 * MIB)
    put(p, "tmp/uploads/cut-off", MIB)
    put(p, f"tmp/{active_job(p)}/part.tif", 10)
    yield p
    p.close()


def janitor(settings: Settings, *args: str) -> tuple[int, str, BaseException | None]:
    env = {**settings_env(settings), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["janitor", *args], env=env)
    return result.exit_code, result.output, result.exception


def test_dry_run_prints_the_orphans_and_what_would_go(no_grace: Settings, swept: Platform) -> None:
    code, out, exc = janitor(no_grace, "--orphans", "--dry-run")
    assert (code, exc) == (0, None), out
    assert "silver/cogs/c/stray.tif" in out
    assert "tmp/uploads/cut-off" in out
    assert "part.tif" not in out
    assert "2.0 MiB" in out
    assert "would remove 2 objects, 3.0 MiB" in out
    assert swept.objects.exists("silver/cogs/c/stray.tif")

    code, out, _ = janitor(no_grace, "--orphans")
    assert code == 0, out
    assert "removed 2 objects, 3.0 MiB" in out
    assert not swept.objects.exists("silver/cogs/c/stray.tif")
    code, out, _ = janitor(no_grace, "--orphans")
    assert "removed 0 objects, 0.0 MiB" in out


def test_json_prints_the_report(no_grace: Settings, swept: Platform) -> None:
    code, out, _ = janitor(no_grace, "--orphans", "--dry-run", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["dry_run"] is True
    assert report["bytes"] == 3 * MIB
    assert [o["key"] for o in report["objects"]] == [
        "silver/cogs/c/stray.tif",
        "tmp/uploads/cut-off",
    ]
    assert {"key", "size", "modified", "reason"} == set(report["objects"][0])
    assert report["versions_discarded"] == report["tables_dropped"] == report["errors"] == []


def test_options_without_orphans_or_a_retention_are_refused(settings: Settings) -> None:
    _, _, exc = janitor(settings, "--dry-run")
    assert isinstance(exc, InputError)
    assert "--orphans" in str(exc)
    _, _, exc = janitor(settings, "--orphans", "--bronze")
    assert isinstance(exc, InputError)
    assert "GEOETL_BRONZE_RETENTION_DAYS" in str(exc)


def test_the_command_says_what_is_missing_in_one_line(settings: Settings) -> None:
    run = geoetl(settings, "janitor", "--orphans", "--bronze", "--dry-run")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "error: --bronze needs a retention period: set GEOETL_BRONZE_RETENTION_DAYS" in (
        " ".join(run.stderr.split())
    )
