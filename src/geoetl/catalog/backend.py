"""The catalog seam: one interface, one module per backend.

``store.py`` (:class:`~geoetl.catalog.store.SqlCatalog`, STAC documents in the
platform database; the embedded default on SQLite) and ``pgstac.py``
(:class:`~geoetl.catalog.pgstac.PgstacCatalog`, pgSTAC on PostgreSQL, readable by
stac-fastapi-pgstac and titiler-pgstac) implement :class:`CatalogBackend`.
:func:`open_catalog` picks the backend from the database URL; nothing else asks
which one it is.

Access levels: every collection and item is stored with one (``public``, ``ouo``,
``restricted``); ``audience`` arguments and ``SearchRequest.access_levels`` list the
levels the caller may see (None: everything). Hidden things are NotFound, and
collection extents shown to an audience cover only the items it may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from geoetl.catalog.models import SearchRequest


class CatalogBackend(Protocol):
    """STAC collections and items, and item search."""

    def ensure_system_collections(self) -> None:
        """Create ``system-rasters`` and ``system-vectors`` if missing (never deleted)."""

    def upsert_collection(self, collection: dict[str, Any], access_level: str) -> None:
        """Create or replace a collection document."""

    def ensure_collection(self, collection_id: str, access_level: str) -> None:
        """Make sure a collection exists (a new one takes ``access_level``)."""

    def get_collection(
        self, collection_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """A collection document, or NotFound (also when ``audience`` may not see it)."""

    def list_collections(
        self, audience: list[str] | None = None, q: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every collection ``audience`` may see, by id; ``q`` keeps those matching any term."""

    def upsert_item(self, item: dict[str, Any], access_level: str) -> None:
        """Create or replace an item, widening its collection's extent to cover it."""

    def upsert_items(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Create or replace many items (each with its access level) at once; idempotent."""

    def get_item(
        self, collection_id: str, item_id: str, audience: list[str] | None = None
    ) -> dict[str, Any]:
        """An item document, or NotFound (also when ``audience`` may not see it)."""

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Delete an item; False if there was none."""

    def delete_collection(self, collection_id: str) -> None:
        """Delete an empty, non-system collection (Conflict otherwise)."""

    def search(self, request: SearchRequest) -> tuple[list[dict[str, Any]], int | None]:
        """Items matching ``request`` in a stable order, and how many match (if ``count``)."""

    def property_types(
        self, collection_id: str | None, audience: list[str] | None = None, sample: int = 500
    ) -> dict[str, str]:
        """Item property names and JSON types (the queryables)."""


def open_catalog(
    engine: Engine, storage_url: str | None = None, partition: str | None = None
) -> CatalogBackend:
    """The catalog for this deployment: pgSTAC on PostgreSQL, else the SQL catalog.

    pgSTAC is read by other tools too, so its items carry absolute asset hrefs under
    ``storage_url``; the SQL catalog keeps object keys (a home can move). ``partition``
    is pgSTAC's datetime partitioning of new collections (None: by collection only).
    """
    if engine.dialect.name == "postgresql":
        from geoetl.catalog.pgstac import PgstacCatalog

        return PgstacCatalog(engine, partition_trunc=partition, asset_base=storage_url)
    from geoetl.catalog.store import SqlCatalog

    return SqlCatalog(engine)
