"""The platform: stores built once from settings and handed to handlers and the API."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from geoetl.audit import AuditLog
from geoetl.auth.tokens import TokenStore
from geoetl.batches import BatchStore
from geoetl.catalog.backend import CatalogBackend, open_catalog
from geoetl.engine.db import is_postgres, make_engine, normalize_url
from geoetl.engine.migrate import ensure_schema
from geoetl.engine.queries import JobQueries
from geoetl.engine.store import JobStore
from geoetl.engine.workflow import Registry
from geoetl.features.registry import FeatureRegistry
from geoetl.features.store import FeatureStore, open_feature_store
from geoetl.settings import Settings
from geoetl.storage.objectstore import ObjectStore, open_object_store
from geoetl.versions import VersionStore


@dataclass
class Platform:
    """Everything a running geoetl needs, built from :class:`Settings`."""

    settings: Settings
    store: JobStore
    queries: JobQueries
    objects: ObjectStore
    catalog: CatalogBackend
    features: FeatureStore
    feature_registry: FeatureRegistry
    tokens: TokenStore
    versions: VersionStore
    audit: AuditLog
    batches: BatchStore

    @property
    def workflows(self) -> Registry:
        """The workflows this platform runs."""
        return self.store.workflows

    @classmethod
    def from_settings(
        cls, settings: Settings, workflows: Registry | None = None, *, migrate: bool = True
    ) -> Platform:
        """Connect to the configured backends; the schema is upgraded on first use."""
        if workflows is None:
            from geoetl.workflows import default_registry

            workflows = default_registry()
        engine = make_engine(settings.db_url)
        if migrate:
            ensure_schema(engine)
        if is_postgres(engine):
            from geoetl.catalog import pgstac_install

            # pgSTAC and PostGIS: installed on first use, and the version checked always.
            if migrate:
                pgstac_install.install(engine)
            else:
                pgstac_install.check_version(engine)
        from geoetl.workers import make_dispatcher  # geoetl.workers builds on this module

        store = JobStore(
            engine,
            workflows,
            lease_seconds=settings.lease_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_seconds=settings.retry_max_seconds,
            dispatcher=make_dispatcher(settings, engine),
        )
        partition = None if settings.pgstac_partition == "none" else settings.pgstac_partition
        catalog = open_catalog(engine, settings.storage_url, partition)
        if migrate:
            catalog.ensure_system_collections()
        assert settings.storage_url is not None
        return cls(
            settings=settings,
            store=store,
            queries=JobQueries(store),
            objects=open_object_store(settings),
            catalog=catalog,
            features=open_feature_store(settings, engine),
            feature_registry=FeatureRegistry(engine),
            tokens=TokenStore(engine),
            versions=VersionStore(engine),
            audit=AuditLog(engine),
            batches=BatchStore(engine),
        )

    def close(self) -> None:
        """Release the dispatcher's and the database's connections."""
        try:
            self.store.dispatcher.close()
        finally:
            self.store.engine.dispose()


def preload_backends(settings: Settings) -> None:
    """Import the modules :meth:`Platform.from_settings` opens the backends with.

    Nothing connects. For processes forked before the platform opens (the job helpers
    of ``geoetl ingest``): they share these modules instead of each importing them
    again once their job is named.
    """
    dialect = normalize_url(settings.db_url).get_dialect()
    dialect.import_dbapi()
    postgres = dialect.name == "postgresql"
    for module in (
        ("geoetl.catalog.pgstac", "geoetl.features.postgis")
        if postgres
        else ("geoetl.catalog.store", "geoetl.features.geopackage")
    ):
        importlib.import_module(module)
