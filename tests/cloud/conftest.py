"""The S3 (moto) and Azure Blob (Azurite) servers of the storage suite, for end-to-end tests."""

from tests.storage.conftest import azure_server, s3_server

__all__ = ["azure_server", "s3_server"]
