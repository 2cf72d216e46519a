"""The app on ``settings`` in a TestClient, and the ``geoetl`` CLI run in this process."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from geoetl.api.app import create_app
from geoetl.cli import main
from geoetl.cli.render import console
from geoetl.cli.state import State
from geoetl.settings import Settings
from tests.api.conftest import platform_of
from tests.conftest import settings_env

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    """A client without credentials."""
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def admin(anonymous: TestClient) -> TestClient:
    """A client of the same app sending the admin token ``test-admin``."""
    return as_token(anonymous, "test-admin", "admin", "restricted")


def as_token(client: TestClient, name: str, role: str, clearance: str) -> TestClient:
    """A client of ``client``'s app sending a new token of ``role`` (made without the API)."""
    secret = platform_of(client).tokens.create(name, role, clearance)
    other = TestClient(client.app)
    other.headers.update({"Authorization": f"Bearer {secret}"})
    return other


class Cli:
    """``geoetl ARGS`` in this process on ``settings`` (its own platform, closed after)."""

    def __init__(self, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        self.settings = settings
        self.states: list[State] = []
        states = self.states

        class Recorded(State):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                states.append(self)

        monkeypatch.setattr(main, "State", Recorded)
        # A terminal 200 columns wide, as tests/cli runs the command (COLUMNS=200).
        monkeypatch.setattr(console, "_width", 200)
        self.env = {k: v for k, v in settings_env(settings).items() if k.startswith("GEOETL_")}

    def __call__(self, *args: str) -> Result:
        """The run's result (exit code, stdout, exception)."""
        result = CliRunner().invoke(
            main.app, ["--home", str(self.settings.home), *args], env=self.env
        )
        self.close()
        return result

    def ok(self, *args: str) -> str:
        """The stdout of a run that must succeed."""
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    def close(self) -> None:
        """Close the platforms the runs built."""
        while self.states:
            state: Any = self.states.pop()
            if state._platform is not None:
                state._platform.close()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """Runs ``geoetl`` commands on ``settings``."""
    runner = Cli(settings, monkeypatch)
    yield runner
    runner.close()
