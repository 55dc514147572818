"""Opening Optuna storage: SQLite by default (safe for a dashboard reading while the study writes), or any
SQLAlchemy URL Optuna supports (PostgreSQL for teams: postgresql+psycopg://user:pass@host/db)."""
from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from tuner.errors import InputError, StudyNotFound

SQLITE_TIMEOUT_S = 60
CREATE_RACE_RETRIES = 5


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def check_storage_url(url: str, source: str, key: str) -> None:
    """Reject a storage URL that cannot be opened, before anything is written anywhere."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise InputError(source, key, f"{url!r} is not a database URL (e.g. sqlite:///tuner.db)") from None
    try:
        parsed.get_dialect()
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'tuner[postgres]')" if parsed.get_backend_name().startswith("postgres") else ""
        raise InputError(source, key, f"cannot open {url!r}: {exc}{hint}") from None
    path = _sqlite_path(url)
    if path is not None and not path.absolute().parent.is_dir():
        raise InputError(source, key, f"cannot open {url!r}: directory {path.absolute().parent} does not exist")
    if path is None and parsed.get_backend_name() != "sqlite":
        try:
            engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            with engine.connect():
                pass
        except sqlalchemy.exc.SQLAlchemyError as exc:
            reason = str(exc.orig if hasattr(exc, "orig") and exc.orig else exc).strip().splitlines()[0]
            raise InputError(source, key, f"cannot open {redact_url(url)}: {reason}") from None


def redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    engine_kwargs: dict = {}
    path = _sqlite_path(url)
    if path is not None:
        # WAL lets optuna-dashboard read while the study writes, without "database is locked" errors.
        # The mode is a property of the database file, so setting it once, before Optuna opens it, is enough.
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    for attempt in range(CREATE_RACE_RETRIES - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            # Processes opening a new database at once (a study starting while a dashboard or another driver opens
            # the same file) race to create Optuna's schema; the losers find it made. Opening again succeeds.
            if not _lost_schema_race(exc):
                raise
            time.sleep(0.1 * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _lost_schema_race(exc: Exception) -> bool:
    text = str(exc)
    return "already exists" in text or "UNIQUE constraint failed: alembic_version" in text


def load_existing_study(url: str, name: str) -> optuna.Study:
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise StudyNotFound(f"no study storage at {path} (start a study first, or pass --storage)")
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = f"; studies there: {', '.join(names)}" if names else "; it holds no study yet"
        raise StudyNotFound(f"no study named {name!r} in {redact_url(url)}{known}") from None
