"""The one settings class, read from ``GEOETL_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where geoetl keeps its state and how it runs work.

    Only the application (CLI, API factory) reads settings; everything below it
    receives a :class:`geoetl.platform.Platform` built from them.
    """

    model_config = SettingsConfigDict(env_prefix="GEOETL_", extra="ignore")

    home: Path = Field(default=Path("./geoetl-data"), description="Embedded data folder.")
    database_url: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description="sqlite:///path or postgresql://user:pw@host/db; default: SQLite under home.",
    )
    storage_url: str | None = Field(
        default=None, description="file:///path, s3://bucket/prefix, az://container/prefix."
    )
    executor: Literal["local", "celery"] = Field(
        default="local",
        description=(
            "How workers learn of new tasks: local (PostgreSQL NOTIFY or polling) or celery "
            "(a message per task id through broker_url; the database stays the truth)."
        ),
    )
    broker_url: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description=(
            "Celery broker (any kombu transport: redis://, amqp://, sqs://, "
            "azureservicebus://); required with executor=celery."
        ),
    )
    broker_transport_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'JSON of kombu transport options, e.g. {"predefined_queues": {...}} for SQS '
            'or {"peek_lock_seconds": 60} for Azure Service Bus; kombu\'s defaults otherwise.'
        ),
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (http://host:port); default AWS.",
    )
    s3_region: str | None = Field(default=None, description="S3 region, e.g. eu-west-1.")
    s3_access_key_id: str | None = Field(
        default=None,
        repr=False,
        description="S3 access key; default the standard AWS credential chain.",
    )
    s3_secret_access_key: str | None = Field(default=None, repr=False, description="S3 secret key.")
    s3_session_token: str | None = Field(default=None, repr=False, description="S3 session token.")
    azure_connection_string: str | None = Field(
        default=None,
        repr=False,
        description="Azure Storage connection string (Azurite's works too).",
    )
    azure_account_name: str | None = Field(default=None, description="Azure storage account.")
    azure_account_key: str | None = Field(
        default=None, repr=False, description="Azure account key."
    )
    azure_sas_token: str | None = Field(default=None, repr=False, description="Azure SAS token.")
    azure_use_identity: bool = Field(
        default=False,
        description="Authenticate to Azure with DefaultAzureCredential (managed identity).",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where `geoetl serve` is reached; the CLI prints links under it.",
    )
    lease_seconds: float = Field(default=30.0, gt=0, description="Default task lease.")
    heartbeat_seconds: float | None = Field(
        default=None, gt=0, description="Lease renewal interval; default a third of the lease."
    )
    redispatch_after_seconds: float = Field(
        default=30.0, gt=0, description="Janitor re-dispatches tasks queued longer than this."
    )
    janitor_interval_seconds: float = Field(default=10.0, gt=0)
    event_retention_days: float = Field(
        default=30.0,
        ge=0,
        description=(
            "The janitor deletes the event log of jobs that ended more than this many days "
            "ago (their job and task rows stay); 0 keeps every event."
        ),
    )
    retry_base_seconds: float = Field(default=1.0, ge=0, description="First retry backoff.")
    retry_max_seconds: float = Field(default=300.0, ge=0)
    run_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description=(
            "Processes that run a `geoetl ingest` job: the command's own and "
            "run_workers - 1 helpers, so that a stage's tasks (vector load chunks, raster "
            "windows) run side by side. 1: the command runs every task itself."
        ),
    )
    raster_warp_memory_mb: int = Field(
        default=512,
        ge=0,
        description=(
            "Largest reprojected raster (MiB, all bands) warped in memory, which is faster; "
            "larger ones stream through temporary files."
        ),
    )
    pgstac_partition: Literal["none", "year", "month"] = Field(
        default="none",
        description=(
            "How pgSTAC partitions a new collection's items beyond the collection: "
            "'none' (one table per collection: the cheapest searches at geoetl's volumes), "
            "or by 'year' or 'month' of their datetime for very large time series."
        ),
    )
    raster_split_bytes: int = Field(
        default=1024**3,
        ge=1,
        description=(
            "Uncompressed size (width x height x bands x sample bytes) above which "
            "process_raster writes the COG in windows, one task each, on any worker."
        ),
    )
    upload_max_mb: int = Field(
        default=4096, ge=1, description="Largest file POST /ingest accepts (MiB)."
    )
    anonymous_clearance: Literal["public", "ouo", "restricted"] = Field(
        default="public",
        description="What callers without a token may read (never above the audience).",
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "Comma-separated addresses or networks (CIDR) of reverse proxies whose "
            "X-Forwarded-* headers are honoured; from anyone else they are ignored."
        ),
    )
    demo_workflows: bool = Field(
        default=False,
        description="Expose the demo workflows (hello, fan_out_demo) on the HTTP API.",
    )
    max_active_jobs: int = Field(
        default=10, ge=1, description="Queued or running jobs one caller may have (429 above)."
    )
    max_body_kb: int = Field(
        default=1024, ge=1, description="Largest JSON request body (KiB); uploads excepted."
    )
    max_filter_depth: int = Field(default=20, ge=1, description="Deepest CQL2 nesting.")
    max_filter_terms: int = Field(default=200, ge=1, description="Most CQL2 terms.")
    max_sort_keys: int = Field(default=20, ge=1, description="Most sortby keys.")
    max_fields_keys: int = Field(default=100, ge=1, description="Most fields/properties keys.")
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer whose signed JWT bearer tokens are accepted."
    )
    oidc_audience: str | None = Field(default=None, description="Required JWT `aud`.")
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL.")
    oidc_jwks_file: Path | None = Field(default=None, description="A JWKS file instead.")
    oidc_role_claim: str = Field(default="roles", description="Claim that carries roles.")
    oidc_clearance_claim: str = Field(
        default="clearance", description="Claim that carries the clearance."
    )
    oidc_role_map: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'JSON map of claim values to roles, e.g. {"GeoEtl.Publisher": "publisher"}; '
            "the role names themselves always map to themselves."
        ),
    )
    oidc_default_clearance: Literal["public", "ouo", "restricted"] = Field(
        default="public", description="Clearance of an OIDC caller whose token names none."
    )
    audience: Literal["public", "ouo", "restricted"] = Field(
        default="ouo",
        description=(
            "Who this deployment serves: public shows public data only, ouo adds "
            "official-use-only data, restricted shows everything."
        ),
    )
    root_path: str = Field(
        default="",
        description="Path prefix the API is served under behind a reverse proxy (e.g. /geo).",
    )
    max_image_px: int = Field(
        default=2048, ge=1, description="Largest side, in pixels, of a raster preview."
    )
    max_statistics_px: int = Field(
        default=1024, ge=1, description="Largest side, in pixels, read for raster statistics."
    )
    postgis_schema: str = Field(
        default="geo",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of published feature tables (the PostGIS backend).",
    )
    approval: Literal["none", "required"] = Field(
        default="none",
        description=(
            "required: every publication waits, staged and invisible to readers, until an "
            "admin approves its job (geoetl jobs approve ID, POST /jobs/{id}/approve)."
        ),
    )
    approval_collections: str = Field(
        default="",
        description="Comma-separated STAC collections whose publications need approval.",
    )
    orphan_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="Age before an unreferenced object in silver/ or tmp/ counts as orphaned.",
    )
    bronze_retention_days: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Opt-in: bronze sources no job references are removed by the orphan sweep "
            "once older than this; unset keeps every source."
        ),
    )
    fault_point: str | None = Field(
        default=None,
        description=(
            "Testing only: the process kills itself (SIGKILL) on reaching this named "
            "step (e.g. unpublish:unserved), to prove a rerun converges."
        ),
    )

    @field_validator(
        "audience", "anonymous_clearance", "oidc_default_clearance", "approval", mode="before"
    )
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "database_url",
        "storage_url",
        "broker_url",
        "s3_endpoint_url",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        "s3_session_token",
        "azure_connection_string",
        "azure_account_name",
        "azure_account_key",
        "azure_sas_token",
        "oidc_issuer",
        "oidc_jwks_url",
        "oidc_audience",
        mode="before",
    )
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'geoetl.db'}"
        if self.storage_url is None:
            self.storage_url = (self.home / "storage").as_uri()
        if self.executor == "celery" and not self.broker_url:
            raise ValueError(
                "GEOETL_EXECUTOR=celery needs GEOETL_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        return self

    def approval_required(self, collection_id: str) -> bool:
        """Whether a publication into ``collection_id`` waits for an admin's approval."""
        listed = {c.strip() for c in self.approval_collections.split(",") if c.strip()}
        return self.approval == "required" or collection_id in listed

    @property
    def db_url(self) -> str:
        """The database URL, defaults resolved."""
        assert self.database_url is not None
        return self.database_url

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between lease renewals."""
        return self.heartbeat_seconds or self.lease_seconds / 3.0

    @property
    def scratch_dir(self) -> Path:
        """Local scratch space for running tasks."""
        return self.home / "scratch"
