"""The object store on S3 or an S3-compatible server (``s3://bucket/prefix``), via s3fs.

Credentials: the keys in the settings, else the standard AWS chain (environment,
profiles, web identity, instance role) that botocore resolves — for s3fs and, resolved
per operation, for GDAL's ``/vsis3/``. Uploads above 64 MiB are multipart; bronze
writes are conditional creates (``If-None-Match: *``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import s3fs  # type: ignore[import-untyped]

from geoetl.errors import NotFound, TransientError
from geoetl.storage.base import ObjectStore, causes, meta_names

# Multipart above two parts (64 MiB), parts sent 4 at a time.
PART_BYTES = 32 * 1024 * 1024
UPLOAD_CONCURRENCY = 4
# Error codes S3 and compatible servers answer when a request may succeed later.
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
        "429",
    }
)
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


class S3Store(ObjectStore):
    """Objects in an S3 bucket under a prefix."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._keys = (access_key_id, secret_access_key, session_token)
        client_kwargs: dict[str, Any] = {}
        if region:
            client_kwargs["region_name"] = region
        fs = s3fs.S3FileSystem(
            key=access_key_id,
            secret=secret_access_key,
            token=session_token,
            endpoint_url=endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs={"retries": {"max_attempts": 5, "mode": "adaptive"}},
            # Other workers write too: never answer from a listing cached earlier.
            use_listings_cache=False,
            default_block_size=PART_BYTES,
        )
        root = url.split("://", 1)[1]
        if not root.split("/", 1)[0]:
            raise ValueError(f"storage URL {url!r} names no bucket (s3://bucket/prefix)")
        super().__init__(url, fs, root)

    # -- errors --------------------------------------------------------------------------

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None
        except (FileExistsError, NotFound):
            raise
        except Exception as exc:
            code = _error_code(exc)
            if code in MISSING_CODES:
                raise NotFound(f"no object {key!r}") from None
            if code in RETRYABLE_CODES or _is_connection_error(exc):
                raise TransientError(
                    f"S3 could not serve {key!r} now ({self.redact(str(exc))[:300]})"
                ) from exc
            raise

    def _secrets(self) -> list[str]:
        return [s for s in self._keys[1:] if s]

    # -- GDAL ------------------------------------------------------------------------------

    @cached_property
    def _botocore(self) -> Any:
        import botocore.session  # type: ignore[import-untyped]

        return botocore.session.get_session()

    def gdal_options(self) -> dict[str, str]:
        """``/vsis3/`` settings: endpoint, region, path-style addressing and credentials."""
        options = {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": "4",
            "GDAL_HTTP_RETRY_DELAY": "0.5",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "VSI_CACHE": "TRUE",
        }
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
            options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        region = self.region or self._botocore.get_config_variable("region")
        if region:
            options["AWS_REGION"] = str(region)
            options["AWS_DEFAULT_REGION"] = str(region)
        key, secret, token = self._keys
        if not (key and secret):
            # The standard chain, resolved (and refreshed) by botocore as s3fs does.
            found = self._botocore.get_credentials()
            frozen = found.get_frozen_credentials() if found is not None else None
            if frozen is not None:
                key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
        if key and secret:
            options["AWS_ACCESS_KEY_ID"] = key
            options["AWS_SECRET_ACCESS_KEY"] = secret
            if token:
                options["AWS_SESSION_TOKEN"] = token
        return options

    # -- operations S3 does in one request ---------------------------------------------------

    def _split(self, key: str) -> tuple[str, str]:
        bucket, _, path = self._full(key).partition("/")
        return bucket, path

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object (one HEAD request)."""
        bucket, path = self._split(key)
        try:
            with self._errors(key):
                self.fs.call_s3("head_object", Bucket=bucket, Key=path)
        except NotFound:
            return False
        return True

    def put_file(
        self,
        local: Path,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Upload a local file (multipart above 64 MiB, parts in parallel).

        With ``if_absent`` the upload is a conditional create (``If-None-Match: *``): an
        object already at ``key`` is kept and False returned. ``metadata`` becomes the
        object's user metadata (``x-amz-meta-*``), sent with the upload.
        """
        full = self._full(key)
        extra: dict[str, Any] = {"Metadata": dict(metadata)} if metadata else {}
        try:
            with self._errors(key):
                self.fs.put_file(
                    str(local),
                    full,
                    mode="create" if if_absent else "overwrite",
                    chunksize=PART_BYTES,
                    max_concurrency=UPLOAD_CONCURRENCY,
                    **extra,
                )
        except FileExistsError:
            return False
        return True

    def metadata(self, key: str) -> dict[str, str]:
        """An object's user metadata (one HEAD request)."""
        with self._errors(key):
            found = self.fs.metadata(self._full(key), refresh=True)
        return meta_names(found)

    def get_file(self, key: str, local: Path) -> Path:
        """Download an object to ``local`` in one streamed GET.

        Not in parallel ranges: one stream fills a worker's link for the sources geoetl
        converts, and S3-compatible servers that re-read an object per range request
        (moto, some gateways) slow down many times over.
        """
        full = self._full(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key):
            self.fs.get_file(full, str(local), max_concurrency=1)
        return local

    def delete(self, key: str) -> bool:
        """Delete one object; False if there was none."""
        if not self.exists(key):
            return False
        bucket, path = self._split(key)
        with self._errors(key):
            self.fs.call_s3("delete_object", Bucket=bucket, Key=path)
        return True


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code (or HTTP status) of a botocore ClientError in ``exc``'s causes."""
    for err in causes(exc):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int) and (status >= 500 or status == 429):
                return str(status)
            if code:
                return str(code)
    return None


def _is_connection_error(exc: BaseException) -> bool:
    from botocore.exceptions import (  # type: ignore[import-untyped]
        ConnectionError as BotoConnectionError,
    )
    from botocore.exceptions import HTTPClientError

    for err in causes(exc):
        if isinstance(
            err, (BotoConnectionError, HTTPClientError, asyncio.TimeoutError, ConnectionError)
        ):
            return True
        if type(err).__module__.startswith("aiohttp"):
            return True
    return False
