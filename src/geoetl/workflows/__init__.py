"""The workflows geoetl ships."""

from __future__ import annotations

from geoetl.engine.workflow import Registry
from geoetl.workflows.demo import fan_out_demo, hello
from geoetl.workflows.process_raster import process_raster
from geoetl.workflows.process_vector import process_vector


def default_registry() -> Registry:
    """Every built-in workflow."""
    return Registry([hello, fan_out_demo, process_raster, process_vector])
