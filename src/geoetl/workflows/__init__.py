"""The workflows geoetl ships."""

from __future__ import annotations

from geoetl.engine.workflow import Registry

BUILT_IN = {
    "hello": "geoetl.workflows.demo:hello",
    "fan_out_demo": "geoetl.workflows.demo:fan_out_demo",
    "process_raster": "geoetl.workflows.process_raster:process_raster",
    "process_raster_collection": (
        "geoetl.workflows.process_raster_collection:process_raster_collection"
    ),
    "process_raster_times": "geoetl.workflows.process_raster_times:process_raster_times",
    "process_raster_tiles": "geoetl.workflows.process_raster_tiles:process_raster_tiles",
    "process_vector": "geoetl.workflows.process_vector:process_vector",
    "unpublish": "geoetl.workflows.unpublish:unpublish",
}
"""Each built-in workflow by reference; a workflow's module is imported when it is used."""


def default_registry() -> Registry:
    """Every built-in workflow."""
    return Registry(lazy=BUILT_IN)
