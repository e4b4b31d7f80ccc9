"""Bring a store's schema to the newest revision with Alembic, in place. A store written before migrations existed
(k2probe 0.1) is recognised by its tables, completed with the columns 0.1 added over time, stamped as the baseline,
then upgraded like any other."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ColumnDefault, Connection, inspect
from sqlalchemy import text as sql

from k2probe.core.errors import ConfigError
from k2probe.recording.schema import Base, CallRow

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
HEAD = "0005"  # the newest revision; a test holds it equal to Alembic's head, so opening a current store skips Alembic
_ADDED_SINCE_BASELINE = {"sample_id", "attempt_id", "step", "thread", "fallback_from"}


def ensure(connection: Connection, where: str) -> None:
    """Make the store on `connection` current: upgrade an older one; refuse one written by a newer k2probe (with the
    revision it needs) or one whose tables are missing (damaged, or another program's), each as one line."""
    revision = current_fast(connection)
    if revision not in (None, HEAD) and (not str(revision).isdigit() or int(str(revision)) > int(HEAD)):
        raise ConfigError(f"the store {where} was written by a newer k2probe (schema revision {revision}; this "
                          f"k2probe knows up to {HEAD})",
                          fix="upgrade k2probe (pip install -U k2probe), or point K2PROBE_DB_URL at another store")
    if revision != HEAD:
        upgrade(connection)
    missing = sorted(set(Base.metadata.tables) - set(inspect(connection).get_table_names()))
    if missing:
        raise ConfigError(f"the store {where} lacks table(s) {', '.join(missing)}: it is damaged, or not k2probe's",
                          fix="move that file aside to start a new store, or point K2PROBE_DB_URL at another one")


def _config(connection: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this k2probe knows."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert revision is not None
    return revision


def current_fast(connection: Connection) -> str | None:
    """The store's revision read with one query (no Alembic import); None for a new or pre-migration store."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    value = connection.execute(sql("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


def current(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Upgrade the store on `connection` to the head revision (a no-op when it is there already)."""
    from alembic import command

    tables = set(inspect(connection).get_table_names())
    config = _config(connection)
    if "alembic_version" not in tables and "runs" in tables:
        _complete_01(connection)
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def _complete_01(connection: Connection) -> None:
    """A 0.1 store from before some `calls` columns existed gets them, so the baseline describes it truly."""
    existing = {c["name"] for c in inspect(connection).get_columns("calls")}
    for column in CallRow.__table__.columns:
        if column.name not in existing and column.name not in _ADDED_SINCE_BASELINE:
            kind = column.type.compile(dialect=connection.dialect)
            default = " NOT NULL DEFAULT 0" if isinstance(column.default, ColumnDefault) else ""
            connection.execute(sql(f"ALTER TABLE calls ADD COLUMN {column.name} {kind}{default}"))
