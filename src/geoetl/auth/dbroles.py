"""PostgreSQL reader roles: eoAPI's servers read the platform database within a clearance.

``geoetl db create-reader-role NAME --clearance LEVEL`` makes a LOGIN role that
stac-fastapi-pgstac, titiler-pgstac and TiPG connect as. It sees the STAC items and
collections, and the feature tables, whose access level is at or below its clearance
(:func:`geoetl.catalog.models.visible_levels`), and nothing else:

pgSTAC
    Row-level security on ``pgstac.items`` (``content->'properties'->>'geoetl:access_level'``),
    ``pgstac.collections`` (``content->>'geoetl:access_level'``) and
    ``pgstac.partition_stats`` (rows of the collections the role sees; pgSTAC's
    ``search()`` reads it to split newest-first searches into time chunks, and it
    names collections and their extents). Each reader role has one ``SELECT`` policy
    per table; ``pgstac_admin`` and ``pgstac_ingest`` get permissive ``USING (true)``
    policies, so pgSTAC's own roles (and geoetl, which writes as one of them or as the
    owner or a superuser, who bypass row-level security) still see and write every
    row. Any other role that is not a reader sees no rows of those tables.

    A reader is deliberately *not* a member of ``pgstac_read``: pgSTAC's default
    privileges give ``pgstac_read`` ``SELECT`` on every table it creates, including
    each item partition (``pgstac._items_1``, ``pgstac._items_1_2024``…) created when
    a collection or a year receives its first item, and reading a partition directly
    skips the parent table's row-level security. A reader gets instead the privileges
    pgSTAC's read functions need, on the parent tables only: see ``_PGSTAC_READ`` and
    ``_PGSTAC_CACHES`` (``search()`` and titiler-pgstac's search registration write
    the ``searches`` and ``search_wheres`` caches). pgSTAC's functions are executable
    by PUBLIC, and the ones a reader calls run with the caller's rights (only
    partition maintenance is SECURITY DEFINER), so row-level security applies inside
    them. The one view they read, ``collections_asitems`` (``collection_search()``:
    stac-fastapi's ``/collections``), is switched to ``security_invoker`` so it reads
    ``collections`` with the reader's rights rather than its owner's.

PostGIS
    ``USAGE`` on the feature schema (``Settings.postgis_schema``) and ``SELECT`` on the
    tables whose feature registry access level is within the clearance; every other
    table of that schema is revoked. TiPG lists only tables the role may select.
    :meth:`ReaderRoles.sync` re-applies this for every reader role after each vector
    publication (a table replaced or re-published at another level is granted or
    revoked again).

Each reader role and its clearance is recorded in ``geoetl_reader_roles`` in the
platform schema (roles are cluster-wide, clearances are per database). Role names and
passwords are user input: names are checked against :data:`NAME` and quoted as
identifiers, a password is hashed (SCRAM) by the client library and sent as a literal,
so the clear text never reaches the server or its logs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from sqlalchemy.engine import Engine

from geoetl.catalog.models import AccessLevel, normalize_access_level, visible_levels
from geoetl.errors import InputError

if TYPE_CHECKING:
    from geoetl.platform import Platform

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TABLE = "geoetl_reader_roles"
# pgSTAC's roles: a reader may not be one of them or a member of one (see the docstring).
PGSTAC_ROLES = ("pgstac_admin", "pgstac_ingest", "pgstac_read")
# Serializes grants and policy changes (concurrent GRANTs on one object can fail).
_LOCK = 0x6765_6F72_6F6C
# What pgSTAC's read functions (search, collection_search, get_item, get_queryables,
# xyzsearch, …) read as the calling reader; partitions, staging tables and the
# partition views are left out on purpose.
_PGSTAC_READ = (
    "items",
    "collections",
    "collections_asitems",
    "partition_stats",
    "base_items",
    "pgstac_settings",
    "queryables",
    "queryable_wrappers",
    "cql2_ops",
    "stac_extensions",
    "migrations",
)
# Caches a reader's searches write: search() and search_query() record their where
# clause and statistics; titiler-pgstac registers mosaics in ``searches``.
_PGSTAC_CACHES = ("searches", "search_wheres")
# Row-level security: table -> the expression holding a row's access level.
_LEVEL_OF = {
    "items": "content->'properties'->>'geoetl:access_level'",
    "collections": "content->>'geoetl:access_level'",
}
# Tables whose rows name a collection (its partitions' extents; the base item that
# hydrates its items): a reader sees the rows of the collections it sees.
_OF_VISIBLE_COLLECTION = ("partition_stats", "base_items")
_COLLECTION_RULE = "collection IN (SELECT id FROM pgstac.collections)"


@dataclass(frozen=True)
class ReaderRole:
    """A reader role recorded in this database."""

    name: str
    clearance: AccessLevel
    exists: bool
    feature_tables: tuple[str, ...] = ()


def check_name(name: str) -> str:
    """``name`` if it may name a reader role; InputError otherwise."""
    if not NAME.match(name):
        raise InputError(
            f"role name {name!r} is not valid: lowercase letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters"
        )
    if name.startswith(("pg_", "pgstac")) or name in ("postgres", "public"):
        raise InputError(f"role name {name!r} is reserved (PostgreSQL's or pgSTAC's)")
    return name


def policy_name(role: str) -> str:
    """The name of ``role``'s row-level security policies (at most 63 characters)."""
    name = f"geoetl_reader_{role}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(role.encode()).hexdigest()[:8]
    return f"geoetl_reader_{role[:40]}_{digest}"


class ReaderRoles:
    """Reader roles, their pgSTAC row-level security and their feature table grants."""

    def __init__(self, engine: Engine, postgis_schema: str = "geo") -> None:
        if engine.dialect.name != "postgresql":
            raise InputError(
                "reader roles need PostgreSQL (set GEOETL_DATABASE_URL=postgresql://…); "
                "an embedded SQLite deployment has no database roles"
            )
        self.engine = engine
        self.schema = postgis_schema

    # -- public ----------------------------------------------------------------------

    def create(self, name: str, clearance: str, password: str | None = None) -> ReaderRole:
        """Create or update the LOGIN role ``name`` reading at most ``clearance``.

        Without ``password`` a new role has none (it can log in only where
        ``pg_hba.conf`` trusts it) and an existing role keeps its own.
        """
        check_name(name)
        level = normalize_access_level(clearance)
        levels = visible_levels(level)
        with self._transaction() as cur:
            self._ensure_table(cur)
            self._ensure_login_role(cur, name, password)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (role_name, clearance) VALUES (%s, %s) "
                    "ON CONFLICT (role_name) DO UPDATE "
                    "SET clearance = EXCLUDED.clearance, updated_at = now()"
                ).format(sql.Identifier(TABLE)),
                (name, level),
            )
            self._apply_pgstac(cur, name, levels)
            tables = self._apply_features(cur, name, levels)
        return ReaderRole(name, level, True, tuple(tables))

    def sync(self) -> dict[str, list[str]]:
        """Re-grant the feature tables of every reader role from the feature registry.

        Returns each role's granted tables; roles dropped outside geoetl are skipped.
        A database without reader roles is left untouched.
        """
        with self._transaction() as cur:
            out: dict[str, list[str]] = {}
            for name, clearance, exists in self._recorded(cur):
                if exists:
                    out[name] = self._apply_features(cur, name, visible_levels(clearance))
            return out

    def reapply(self) -> list[str]:
        """Apply every recorded reader role's policies and grants again (after an upgrade).

        A pgSTAC migration may recreate the views and policies a reader relies on;
        passwords are left as they are. Returns the roles re-applied.
        """
        done = []
        for role in self.roles():
            if role.exists:
                self.create(role.name, role.clearance)
                done.append(role.name)
        return done

    def roles(self) -> list[ReaderRole]:
        """Every recorded reader role, with the feature tables it may read."""
        with self._transaction() as cur:
            roles = []
            for name, clearance, exists in self._recorded(cur):
                tables = self._granted_tables(cur, name) if exists else []
                roles.append(ReaderRole(name, clearance, exists, tuple(tables)))
            return roles

    def drop(self, name: str) -> bool:
        """Remove a reader role's policies and grants here, forget it, and drop the role.

        The role itself is dropped only if it holds no privileges in other databases
        (PostgreSQL refuses otherwise); returns whether it was dropped.
        """
        check_name(name)
        with self._transaction() as cur:
            recorded = (
                self._table_exists(cur)
                and cur.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE role_name = %s").format(sql.Identifier(TABLE)),
                    (name,),
                ).fetchone()
            )
            if not recorded:
                raise InputError(f"{name!r} is not a reader role of this database")
            exists = self._role_exists(cur, name)
            for table in (*_LEVEL_OF, *_OF_VISIBLE_COLLECTION):
                cur.execute(
                    sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(
                        sql.Identifier(policy_name(name)), sql.Identifier("pgstac", table)
                    )
                )
            if exists:
                role = sql.Identifier(name)
                cur.execute(
                    sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA pgstac FROM {}").format(role)
                )
                cur.execute(sql.SQL("REVOKE ALL ON SCHEMA pgstac FROM {}").format(role))
                if self._schema_exists(cur):
                    schema = sql.Identifier(self.schema)
                    cur.execute(
                        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
                            schema, role
                        )
                    )
                    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema, role))
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE role_name = %s").format(sql.Identifier(TABLE)),
                (name,),
            )
        if not exists:
            return False
        try:
            with self._transaction() as cur:
                cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        except psycopg.errors.DependentObjectsStillExist:
            return False
        return True

    # -- internals -------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[tuple[object, ...]]]:
        """A cursor in one transaction holding the reader-role lock."""
        with self.engine.begin() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            with driver.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                yield cur

    def _table_exists(self, cur: psycopg.Cursor[tuple[object, ...]]) -> bool:
        row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
        return bool(row and row[0])

    def _ensure_table(self, cur: psycopg.Cursor[tuple[object, ...]]) -> None:
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "role_name text PRIMARY KEY, "
                "clearance text NOT NULL CHECK (clearance IN ('public', 'ouo', 'restricted')), "
                "updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(TABLE))
        )

    def _recorded(
        self, cur: psycopg.Cursor[tuple[object, ...]]
    ) -> list[tuple[str, AccessLevel, bool]]:
        """(name, clearance, whether the role still exists) of every recorded reader."""
        if not self._table_exists(cur):
            return []
        rows = cur.execute(
            sql.SQL(
                "SELECT r.role_name, r.clearance, "
                "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name) "
                "FROM {} r ORDER BY r.role_name"
            ).format(sql.Identifier(TABLE))
        ).fetchall()
        return [(str(n), normalize_access_level(str(c)), bool(e)) for n, c, e in rows]

    def _role_exists(self, cur: psycopg.Cursor[tuple[object, ...]], name: str) -> bool:
        return (
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
        )

    def _schema_exists(self, cur: psycopg.Cursor[tuple[object, ...]]) -> bool:
        found = cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        return found.fetchone() is not None

    def _ensure_login_role(
        self, cur: psycopg.Cursor[tuple[object, ...]], name: str, password: str | None
    ) -> None:
        """Create the role, or check that an existing one can be confined."""
        row = cur.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)
        ).fetchone()
        role = sql.Identifier(name)
        if row is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        else:
            if row[0] or row[1]:
                raise InputError(
                    f"role {name!r} is a superuser or bypasses row-level security: "
                    "it would see everything, so it cannot be a reader role"
                )
            member_of = [
                r
                for r in PGSTAC_ROLES
                if cur.execute(
                    "SELECT to_regrole(%s) IS NOT NULL AND pg_has_role(%s, %s, 'MEMBER')",
                    (r, name, r),
                ).fetchone()
                == (True,)
            ]
            if member_of:
                raise InputError(
                    f"role {name!r} is a member of {', '.join(member_of)}, which reads "
                    "pgSTAC past row-level security; revoke that membership first"
                )
            cur.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))
        if password is not None:
            if not password:
                raise InputError("the password is empty")
            driver = cur.connection
            verifier = driver.pgconn.encrypt_password(
                password.encode("utf-8"), name.encode("utf-8"), b"scram-sha-256"
            )
            cur.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    role, sql.Literal(verifier.decode("ascii"))
                )
            )

    def _apply_pgstac(
        self, cur: psycopg.Cursor[tuple[object, ...]], name: str, levels: list[AccessLevel]
    ) -> None:
        """Privileges on pgSTAC and the reader's row-level security policies."""
        role = sql.Identifier(name)
        policy = sql.Identifier(policy_name(name))
        cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA pgstac FROM {}").format(role))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA pgstac TO {}").format(role))
        cur.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier("pgstac", t) for t in _PGSTAC_READ), role
            )
        )
        cur.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier("pgstac", t) for t in _PGSTAC_CACHES), role
            )
        )
        # collection_search() reads this view; with the caller's rights, RLS applies.
        cur.execute("ALTER VIEW pgstac.collections_asitems SET (security_invoker = true)")
        allowed = sql.SQL("{}::text[]").format(sql.Literal(list(levels)))
        rules: dict[str, sql.Composable] = {
            t: sql.SQL("{} = ANY ({})").format(sql.SQL(e), allowed) for t, e in _LEVEL_OF.items()
        }
        for table in _OF_VISIBLE_COLLECTION:
            rules[table] = sql.SQL(_COLLECTION_RULE)
        for table, rule in rules.items():
            target = sql.Identifier("pgstac", table)
            self._enable_rls(cur, table)
            cur.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(policy, target))
            cur.execute(
                sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO {} USING ({})").format(
                    policy, target, role, rule
                )
            )

    def _enable_rls(self, cur: psycopg.Cursor[tuple[object, ...]], table: str) -> None:
        """Row-level security on ``pgstac.<table>``, all rows still open to pgSTAC's roles."""
        target = sql.Identifier("pgstac", table)
        for owner in ("pgstac_admin", "pgstac_ingest"):
            policy = sql.Identifier(f"geoetl_{owner}_all")
            present = cur.execute(
                "SELECT 1 FROM pg_policies WHERE schemaname = 'pgstac' AND tablename = %s "
                "AND policyname = %s",
                (table, f"geoetl_{owner}_all"),
            ).fetchone()
            if present is None:
                cur.execute(
                    sql.SQL(
                        "CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO {} "
                        "USING (true) WITH CHECK (true)"
                    ).format(policy, target, sql.Identifier(owner))
                )
        cur.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(target))

    def _apply_features(
        self, cur: psycopg.Cursor[tuple[object, ...]], name: str, levels: list[AccessLevel]
    ) -> list[str]:
        """SELECT on exactly the feature tables within ``levels``; returns their names."""
        if not self._schema_exists(cur):
            return []
        role = sql.Identifier(name)
        schema = sql.Identifier(self.schema)
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
        cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, role))
        tables = self._tables_within(cur, levels)
        if tables:
            cur.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(self.schema, t) for t in tables), role
                )
            )
        return tables

    def _tables_within(
        self, cur: psycopg.Cursor[tuple[object, ...]], levels: list[AccessLevel]
    ) -> list[str]:
        """Existing tables of the feature schema registered at one of ``levels``.

        A table registered twice (two collections of one dataset) is granted only if
        every registration is within ``levels``.
        """
        if cur.execute("SELECT to_regclass('feature_collections') IS NULL").fetchone() == (True,):
            return []
        rows = cur.execute(
            "SELECT fc.table_name FROM feature_collections fc "
            "JOIN pg_tables t ON t.schemaname = %s AND t.tablename = fc.table_name "
            "GROUP BY fc.table_name HAVING bool_and(fc.access_level = ANY(%s)) "
            "ORDER BY fc.table_name",
            (self.schema, list(levels)),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _granted_tables(self, cur: psycopg.Cursor[tuple[object, ...]], name: str) -> list[str]:
        rows = cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s "
            "AND has_table_privilege(%s, format('%%I.%%I', schemaname, tablename), 'SELECT') "
            "ORDER BY tablename",
            (self.schema, name),
        ).fetchall()
        return [str(r[0]) for r in rows]


def sync_reader_grants(platform: Platform) -> None:
    """After a vector publication: re-grant every reader role's feature tables.

    Nothing to do on SQLite or in a database without reader roles.
    """
    engine = platform.feature_registry.engine
    if engine.dialect.name == "postgresql":
        ReaderRoles(engine, platform.settings.postgis_schema).sync()
