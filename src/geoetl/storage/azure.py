"""The object store on Azure Blob Storage (``az://container/prefix``), via adlfs.

Credentials, the first given: a connection string (Azurite's too), an account key, a SAS
token, or ``DefaultAzureCredential`` (managed identity, workload identity, service
principal, Azure CLI) through azure-identity. GDAL's ``/vsiaz/`` gets the same, per
operation: an identity as a bearer token (``AZURE_STORAGE_ACCESS_TOKEN``) refreshed
before it expires. Large uploads are staged in blocks; bronze writes are conditional
creates (``If-None-Match: *``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import adlfs  # type: ignore[import-untyped]

from geoetl.errors import NotFound, TransientError
from geoetl.storage.base import ObjectStore, causes, meta_names

STORAGE_SCOPE = "https://storage.azure.com/.default"
BLOCK_BYTES = 16 * 1024 * 1024


class AzureStore(ObjectStore):
    """Objects in an Azure Blob container under a prefix."""

    def __init__(
        self,
        url: str,
        *,
        connection_string: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        use_identity: bool = False,
    ) -> None:
        self._connection_string = connection_string
        self._account_key = account_key
        self._sas_token = sas_token.lstrip("?") if sas_token else None
        self._use_identity = use_identity and not (connection_string or account_key or sas_token)
        self.account_name = account_name or _account_of(connection_string)
        if not (connection_string or self.account_name):
            raise ValueError(
                "an az:// storage URL needs GEOETL_AZURE_CONNECTION_STRING or "
                "GEOETL_AZURE_ACCOUNT_NAME (with a key, a SAS token or an identity)"
            )
        kwargs: dict[str, Any] = {
            "blocksize": BLOCK_BYTES,
            "skip_instance_cache": True,
        }
        if connection_string:
            kwargs["connection_string"] = connection_string
        else:
            kwargs["account_name"] = self.account_name
            if account_key:
                kwargs["account_key"] = account_key
            elif self._sas_token:
                kwargs["sas_token"] = self._sas_token
            else:
                kwargs["anon"] = False  # adlfs asks DefaultAzureCredential
        fs = adlfs.AzureBlobFileSystem(**kwargs)
        root = url.split("://", 1)[1]
        if not root.split("/", 1)[0]:
            raise ValueError(f"storage URL {url!r} names no container (az://container/prefix)")
        super().__init__(url, fs, root)
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None
        except (FileExistsError, NotFound):
            raise
        except Exception as exc:
            status = _status(exc)
            if status == 404:
                raise NotFound(f"no object {key!r}") from None
            if (status is not None and (status >= 500 or status == 429)) or _is_connection_error(
                exc
            ):
                raise TransientError(
                    f"Azure Blob Storage could not serve {key!r} now "
                    f"({self.redact(str(exc))[:300]})"
                ) from exc
            raise

    def _secrets(self) -> list[str]:
        found = [self._account_key, self._sas_token, self._connection_string]
        if self._token:
            found.append(self._token[0])
        return [s for s in found if s]

    def gdal_options(self) -> dict[str, str]:
        """``/vsiaz/`` settings with the same credentials as the store's client."""
        options = {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": "4",
            "GDAL_HTTP_RETRY_DELAY": "0.5",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "VSI_CACHE": "TRUE",
        }
        if self._connection_string:
            options["AZURE_STORAGE_CONNECTION_STRING"] = self._connection_string
            return options
        assert self.account_name is not None
        options["AZURE_STORAGE_ACCOUNT"] = self.account_name
        if self._account_key:
            options["AZURE_STORAGE_ACCESS_KEY"] = self._account_key
        elif self._sas_token:
            options["AZURE_STORAGE_SAS_TOKEN"] = self._sas_token
        else:
            options["AZURE_STORAGE_ACCESS_TOKEN"] = self._access_token()
        return options

    def _access_token(self) -> str:
        """A bearer token from DefaultAzureCredential, reused until five minutes before expiry."""
        with self._token_lock:
            if self._token is None or self._token[1] - time.time() < 300:
                from azure.identity import DefaultAzureCredential

                token = DefaultAzureCredential().get_token(STORAGE_SCOPE)
                self._token = (token.token, float(token.expires_on))
            return self._token[0]

    def put_file(
        self,
        local: Any,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Upload a local file (in blocks when large); ``if_absent`` keeps an existing blob.

        ``metadata`` is set on the blob right after the upload (adlfs sets its own at
        upload); a reader that sees the blob before that finds it without.
        """
        full = self._full(key)
        try:
            with self._errors(key):
                self.fs.put_file(str(local), full, overwrite=not if_absent, max_concurrency=8)
        except FileExistsError:
            return False
        if metadata:
            with self._errors(key):
                self.fs.setxattrs(full, **{"is_directory": "false", **dict(metadata)})
        return True

    def metadata(self, key: str) -> dict[str, str]:
        """A blob's metadata (without adlfs's own ``is_directory``)."""
        full = self._full(key)
        with self._errors(key):
            self.fs.invalidate_cache(full)
            found = self.fs.info(full).get("metadata") or {}
        return {k: v for k, v in meta_names(found).items() if k != "is_directory"}


def _account_of(connection_string: str | None) -> str | None:
    for part in (connection_string or "").split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "accountname":
            return value.strip()
    return None


def _status(exc: BaseException) -> int | None:
    for err in causes(exc):
        status = getattr(err, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _is_connection_error(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return any(
        isinstance(err, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError))
        for err in causes(exc)
    )
