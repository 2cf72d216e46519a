"""What CLI commands share: settings and, built on first use, the platform."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from geoetl.settings import Settings

if TYPE_CHECKING:
    from geoetl.platform import Platform  # imports the engine and every workflow's stack


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
            # Building the platform imports most of geoetl's libraries: millions of
            # long-lived objects. The cyclic GC would scan them again and again while they
            # load and once more at exit (about a third of a small ingest's time), so it
            # is paused here and what was loaded is moved out of its reach (gc.freeze).
            gc.disable()
            try:
                from geoetl.platform import Platform

                self._platform = Platform.from_settings(self.settings)
            finally:
                gc.freeze()
                gc.enable()
        return self._platform


def get_state(ctx: typer.Context) -> State:
    """The state the root callback stored."""
    root = ctx.find_root()
    assert isinstance(root.obj, State)
    return root.obj
