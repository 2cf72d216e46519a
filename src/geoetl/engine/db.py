"""Database engines for the job store: SQLite (WAL, BEGIN IMMEDIATE) or PostgreSQL (psycopg 3).

Also what tells a database outage (a restart, a dropped connection, a busy SQLite file)
from a bug, and the loop that waits one out.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 60.0
# A pooled PostgreSQL connection idle this long is tested before use (see _ping_when_idle).
IDLE_PING_S = 1.0
# Execution option: "off" for a transaction whose commit need not wait for the disk,
# "any" for a read (see _synchronous_commit_per_transaction).
SYNCHRONOUS_COMMIT = "geoetl_synchronous_commit"
# Waits between attempts while the database is away: short at first (a dropped
# connection is back at once), then capped so a restart is noticed within seconds.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
# PostgreSQL errors that say "not now" rather than "never": the server is shutting down,
# starting up or out of connections, or the transaction lost a race and may run again.
_TRANSIENT_SQLSTATES = {"57P01", "57P02", "57P03", "53300", "40001", "40P01"}
# When this process last saw the database fail, or come back (time.monotonic()).
_last_trouble = float("-inf")


def normalize_url(url: str) -> URL:
    """Parse a user's database URL; plain ``postgresql://`` means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_postgres(engine: Engine) -> bool:
    """True when ``engine`` talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files are created with their folder, in WAL mode."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    # No server-side prepared statements: a cached generic plan for the claim query
    # scans every queued task (measured: 38 ms vs 9 ms per claim at 10,000 queued).
    engine = sa.create_engine(
        parsed,
        pool_size=5,
        max_overflow=5,
        connect_args={
            "prepare_threshold": None,
            # A server that vanished without closing its sockets (a network drop, a host
            # down) is noticed within about half a minute instead of hanging a worker.
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )
    _ping_when_idle(engine)
    _synchronous_commit_per_transaction(engine)
    return engine


def _synchronous_commit_per_transaction(engine: Engine) -> None:
    """``synchronous_commit`` as each transaction asks, set only when it changes.

    A transaction started with the execution option ``SYNCHRONOUS_COMMIT`` = ``"off"``
    commits without waiting for the WAL flush; ``"any"`` (reads) takes the connection
    as it is; anything else (the default: every caller that does not ask) commits
    durably. The setting is the session's, so a worker's stream of lease transactions
    pays for it once per connection, not with a ``SET LOCAL`` round trip each.
    """

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        want = conn.get_execution_options().get(SYNCHRONOUS_COMMIT, "on")
        if want == "any" or conn.info.get("synchronous_commit") == want:
            return
        conn.exec_driver_sql(f"SET synchronous_commit = {'off' if want == 'off' else 'on'}")
        conn.info["synchronous_commit_pending"] = want

    # An invalidated connection (lost in an outage) has no DBAPI connection to remember
    # anything about (and asking for its .info would try to reconnect mid-transaction).

    @sa.event.listens_for(engine, "commit")
    def _commit(conn: sa.Connection) -> None:
        if not conn.invalidated and "synchronous_commit_pending" in conn.info:
            conn.info["synchronous_commit"] = conn.info.pop("synchronous_commit_pending")

    @sa.event.listens_for(engine, "rollback")
    def _rollback(conn: sa.Connection) -> None:
        # A SET in a transaction that rolls back is undone: the last committed one holds.
        if not conn.invalidated:
            conn.info.pop("synchronous_commit_pending", None)


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use when it sat idle for ``IDLE_PING_S`` or more.

    What ``pool_pre_ping`` does, without its round trip on every checkout: a worker
    takes a connection several times per batch of tasks (about 0.3 ms each time on
    loopback). A connection that sat idle may have been cut (a server restart, a
    network drop) and is replaced before the caller sees it; one that failed while in
    use raises a transient error, which the engine's callers retry.
    """

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_S:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one).
            raise sa.exc.DisconnectionError(f"idle connection is gone: {exc}") from exc


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front, so read-then-write never deadlocks;
        # pure readers ask for a deferred transaction.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # The busy timeout waits for the lock; a writer still waiting after it is under
        # heavy load, not broken: keep waiting rather than fail the caller's change.
        retry_transient(lambda: conn.exec_driver_sql(f"BEGIN {mode}"), what="an SQLite transaction")

    return engine


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means the database is away or busy right now, not that a query is wrong.

    A lost or refused connection, a server shutting down or starting up, too many
    connections, a serialization failure or deadlock (PostgreSQL); a locked or busy
    file (SQLite). Whatever raised it may be run again once the database answers.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and is_transient(exc.orig)
    if isinstance(exc, sqlite3.OperationalError):
        return _locked(exc)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        return False
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: the client lost or could not open the connection.
        return (
            exc.sqlstate is None
            or exc.sqlstate in _TRANSIENT_SQLSTATES
            or (exc.sqlstate.startswith("08"))
        )
    return isinstance(exc, psycopg.InterfaceError) and "closed" in str(exc)


def _locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" (or busy): other writers held the lock too long."""
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).lower()
    return isinstance(orig, sqlite3.OperationalError) and ("locked" in message or "busy" in message)


def describe(exc: BaseException) -> str:
    """One line saying what went wrong with the database (no SQL, no traceback)."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {first[0] if first else 'no message'}"


def outage_within(seconds: float) -> bool:
    """True when this process saw the database fail, or come back, in the last ``seconds``.

    Lease expiry waits that long after an outage: workers could not renew their leases
    while the database was away, and need a moment to do so before theirs count as lost.
    """
    return time.monotonic() - _last_trouble < seconds


class Outage:
    """Logs a database outage once when it begins and once when it ends, for one caller.

    With ``forget_after``, a caller that never learns when the outage ended (the API
    answers requests, it does not poll) counts failures that far apart as new outages.
    """

    def __init__(
        self, what: str, logger: logging.Logger = log, *, forget_after: float | None = None
    ) -> None:
        self.what = what
        self.log = logger
        self.forget_after = forget_after
        self.since: float | None = None
        self._last = float("-inf")
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        """Note a transient failure; the first one of an outage is logged."""
        global _last_trouble
        now = _last_trouble = time.monotonic()
        with self._lock:
            if self.forget_after is not None and now - self._last > self.forget_after:
                self.since = None
            self._last = now
            if self.since is not None:
                return
            self.since = now
        state = "busy" if _locked(exc) else "unavailable"
        self.log.warning(
            "%s: the database is %s (%s); waiting for it to come back",
            self.what,
            state,
            describe(exc),
        )

    def ended(self) -> float | None:
        """Note a success; returns how long the outage lasted, if there was one."""
        global _last_trouble
        with self._lock:
            if self.since is None:
                return None
            now = _last_trouble = time.monotonic()
            lasted = now - self.since
            self.since = None
        # A warning as well: it closes the warning that opened the outage.
        self.log.warning("%s: the database is back after %.1f s", self.what, lasted)
        return lasted


def retry_transient(
    op: Callable[[], T],
    *,
    what: str,
    stop: threading.Event | None = None,
    logger: logging.Logger = log,
) -> T:
    """``op()``, run again with backoff while it fails because the database is away.

    ``op`` must be one transaction (or none): a failed attempt left nothing behind, or a
    commit whose answer was lost, which the engine's fencing makes harmless to repeat.
    Other errors propagate at once. With ``stop``, gives up (re-raising) once it is set.
    """
    outage = Outage(what, logger)
    delay = RETRY_FIRST_S
    while True:
        try:
            result = op()
        except Exception as exc:
            if not is_transient(exc) or (stop is not None and stop.is_set()):
                raise
            outage.failed(exc)
            pause = delay * random.uniform(0.5, 1.0)
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        outage.ended()
        return result
