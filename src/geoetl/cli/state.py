"""What CLI commands share: settings and, built on first use, the platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from geoetl.platform import Platform
from geoetl.settings import Settings


@dataclass
class State:
    """Settings from the environment and ``--home``; the platform on first use."""

    home: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _platform: Platform | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The settings."""
        if self._settings is None:
            self._settings = Settings(home=self.home) if self.home else Settings()
        return self._settings

    @property
    def platform(self) -> Platform:
        """The platform, connected on first use."""
        if self._platform is None:
            self._platform = Platform.from_settings(self.settings)
        return self._platform


def get_state(ctx: typer.Context) -> State:
    """The state the root callback stored."""
    root = ctx.find_root()
    assert isinstance(root.obj, State)
    return root.obj
