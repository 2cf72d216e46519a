"""The object store: zones (bronze, silver, tmp, landing) on a folder, S3 or Azure Blob.

:func:`open_object_store` picks the backend from ``GEOETL_STORAGE_URL``; the rules
every backend shares are in :mod:`geoetl.storage.base`, one module per backend beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoetl.storage.base import (
    LINEAGE,
    MAX_NAME_BYTES,
    ZONES,
    ObjectStore,
    Upload,
    Zone,
    sha256_file,
)
from geoetl.storage.local import LocalStore

if TYPE_CHECKING:
    from geoetl.settings import Settings

__all__ = [
    "LINEAGE",
    "MAX_NAME_BYTES",
    "ZONES",
    "LocalStore",
    "ObjectStore",
    "Upload",
    "Zone",
    "open_object_store",
    "sha256_file",
]


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store at ``settings.storage_url`` (``file://``, ``s3://``, ``az://``)."""
    url = settings.storage_url
    assert url is not None
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme == "file":
        return LocalStore(url)
    if scheme == "s3":
        from geoetl.storage.s3 import S3Store

        return S3Store(
            url,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            session_token=settings.s3_session_token,
        )
    if scheme in ("az", "abfs"):
        from geoetl.storage.azure import AzureStore

        return AzureStore(
            url,
            connection_string=settings.azure_connection_string,
            account_name=settings.azure_account_name,
            account_key=settings.azure_account_key,
            sas_token=settings.azure_sas_token,
            use_identity=settings.azure_use_identity,
        )
    raise ValueError(
        f"GEOETL_STORAGE_URL {url.split('://', 1)[0]}:// is not supported: use file:///path, "
        "s3://bucket/prefix or az://container/prefix"
    )
