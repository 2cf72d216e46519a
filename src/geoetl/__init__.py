"""geoetl: turn geospatial files into published, standards-based services."""

__version__ = "0.1.0"
