"""An open study database: Optuna's RDB storage plus bopsweep's metric tables.

One Optuna study per bopsweep study; its user attribute ``bopsweep_spec`` holds the study's
definition, so ``bopsweep resume`` needs nothing else, and ``bopsweep_schema`` the version of
what it stores, which a command that writes brings up to date first
(:mod:`bopsweep.store.schema`; every key: :mod:`bopsweep.attr_keys`). Each trial's params
are plain values (any Optuna tool reads them); its user attributes hold the configuration
id, what its configuration changes from the study's base (:mod:`bopsweep.store.trial_config`)
and, when it ends, its results or the reason it failed. Metric rows: see
:mod:`bopsweep.store.metrics`.

Commands that only read (``status``, ``studies``, ``plot``, ``export``) open the database
read-only (:meth:`Store.open_readonly`): SQLite's ``query_only``, a read-only PostgreSQL session,
no table created, not a byte changed; a read-only file system is fine. The one exception is
SQLite's own crash recovery: a write that a killed process left half done (a hot journal) is
rolled back when the database is read, by any command (see :func:`connect_readonly`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bopsweep.attr_keys import C2I_ATTR, LEGACY_ATTR, SCHEMA_ATTR, SPEC_ATTR, UUID_ATTR
from bopsweep.errors import UserError
from bopsweep.files import is_sqlite_file
from bopsweep.store.definitions import comparable, differences, free_name, grows, summary
from bopsweep.store.failures import reason
from bopsweep.store.fencing import study_lock
from bopsweep.store.metrics import METRIC_TABLES, MetricTables
from bopsweep.store.optuna_adapter import study_id
from bopsweep.store.schema import check_readable, current_version, upgrade
from bopsweep.store.urls import engine_url, redact, sqlite_path
from bopsweep.studies.stored import spec_from_stored
from bopsweep.trial.legacy_c2i import C2I_MEANING

# optuna: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    import optuna


# what create() writes before the definition, which makes a study whole (_left_unmade)
MADE_FIRST = {UUID_ATTR, C2I_ATTR, SCHEMA_ATTR}


class NoStudyTables(UserError):
    """A database opened read-only that holds no Optuna tables (yet): a run would make them."""


class Store:
    """An open database: Optuna's storage and bopsweep's metric tables."""

    def __init__(
        self,
        url: str,
        create: bool = False,
        heartbeat: tuple[int, int, int] | None = None,
        readonly: bool = False,
    ) -> None:
        """Open ``url``; ``heartbeat`` = (interval s, grace period s, retries) turns on Optuna's
        RDB heartbeat, whose stale trials (of a driver that died) are failed and re-queued by
        Optuna's retry callback. ``readonly``: see :meth:`open_readonly`."""
        self.url = url
        self.readonly = readonly
        path = sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create and not readonly, readonly)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                beat: dict[str, Any] = {}  # RDBStorage keyword arguments
                if heartbeat is not None:
                    interval, grace, retries = heartbeat
                    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
                    beat = {
                        "heartbeat_interval": interval,
                        "grace_period": grace,
                        "heartbeat_stale_trial_callback": retry,
                    }
                self.storage = optuna.storages.RDBStorage(
                    engine_url(url),
                    engine_kwargs=_engine_kwargs(url, readonly, path),
                    skip_table_creation=readonly,
                    **beat,
                )
        except ImportError:
            raise UserError(
                f"the database driver for {redact(url)} is not installed; install it with: "
                "pip install 'bopsweep[postgres]' (PostgreSQL) or pip install pymysql (MySQL)"
            ) from None
        except Exception as e:  # SQLAlchemy / driver errors: unreachable, refused, not a database
            if readonly and _is_write_refused(e):
                raise NoStudyTables(
                    f"{redact(url)} holds no bopsweep study (its Optuna tables are missing, "
                    "unfinished or of another version); run the study command to make one"
                ) from None
            raise UserError(f"cannot open the database {redact(url)}: {reason(e, url)}") from None
        self.engine = self.storage.engine
        self.metrics = MetricTables(self.storage, readonly)

    @classmethod
    def open_readonly(cls, url: str) -> Store:
        """For commands that only read: no table is created and no byte changes (SQLite:
        :func:`connect_readonly`; PostgreSQL in a read-only session), so it works on a
        read-only file system and leaves a plain Optuna database as it was."""
        return cls(url, readonly=True)

    # --- studies ------------------------------------------------------------------------------
    def study_names(self) -> list[str]:
        return [s.study_name for s in self.storage.get_all_studies()]

    def bopsweep_studies(self) -> list[str]:
        return [s.study_name for s in self.storage.get_all_studies() if SPEC_ATTR in s.user_attrs]

    def load(self, name: str | None, writing: bool = False) -> optuna.Study:
        """An existing bopsweep study; with no name, the database's only one. ``writing``: read
        (read-only) for a command that writes it next: one of a newer bopsweep is refused."""

        names = self.bopsweep_studies()
        if name is None:
            if len(names) != 1:
                where = redact(self.url)
                if not names:
                    raise UserError(f"{where} holds no bopsweep study")
                raise UserError(
                    f"{where} holds several studies ({', '.join(names)}); "
                    "choose one with --study NAME"
                )
            name = names[0]
        if name not in names:
            if name in self.study_names() and self._left_unmade(name):
                raise UserError(
                    f"study {name!r} in {redact(self.url)} was left half made (a command was "
                    "stopped while it made it); run the study command again to make it"
                )
            raise UserError(
                f"no bopsweep study named {name!r} in {redact(self.url)}"
                + (f"; it holds: {', '.join(names)}" if names else "")
            )
        study = self._optuna_study(name)
        # before its definition's shape, which a newer bopsweep may have changed
        check_readable(study.user_attrs, name, self.readonly and not writing)
        _check_definition(study)
        return study

    def _left_unmade(self, name: str) -> bool:
        """A study as :meth:`create` leaves it when stopped between making it and giving it
        its definition (Optuna cannot do both in one transaction): maximized, with no attribute
        and no trial. Taking it over loses nothing, even if another tool made it."""
        import optuna

        study_id = self.storage.get_study_id_from_name(name)
        return (
            self.storage.get_study_directions(study_id) == [optuna.study.StudyDirection.MAXIMIZE]
            and set(self.storage.get_study_user_attrs(study_id)) <= MADE_FIRST
            and not self.storage.get_study_system_attrs(study_id)
            and self.storage.get_n_trials(study_id) == 0
        )

    def _optuna_study(self, name: str) -> optuna.Study:
        import optuna

        return optuna.load_study(study_name=name, storage=self.storage)

    def existing(self, spec: Any) -> optuna.Study | None:
        """The study of ``spec`` (a StudySpec) if the database holds it, else None; refused
        (as :meth:`create` refuses it) if that name is another study. Writes nothing."""

        if spec.name not in self.study_names():
            return None
        study = self._optuna_study(spec.name)
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None and self._left_unmade(spec.name):
            return None  # create() gives it its definition
        if stored is None:
            raise UserError(
                f"{spec.name!r} in {redact(self.url)} is an Optuna study not made "
                "by bopsweep; choose another --study name"
            )
        # a study command (or its dry run) writes it next: refused before its definition
        check_readable(study.user_attrs, spec.name, readonly=False)
        old, new = comparable(stored), comparable(spec.to_dict())
        found = differences(old, new)
        if found and not grows(old, new):  # a grown study adds its missing trials
            free = free_name(spec.name, self.study_names())
            raise UserError(
                f"study {spec.name!r} already exists with a different definition "
                f"({summary(found)}); it may only grow (more values of an axis, more seeds): "
                f"resume it with 'bopsweep resume', or run this one as another study: "
                f"--study {free}"
            )
        return study

    def create(self, spec: Any) -> tuple[optuna.Study, bool]:
        """The study for ``spec`` (a StudySpec), created if new; (study, created). Under the
        study's lock (:func:`~bopsweep.store.fencing.study_lock`): commands that make the same
        study at once make it once, and each finds it whole."""
        with study_lock(self.engine, spec.name):
            return self._create(spec)

    def join(self, name: str) -> optuna.Study:
        """An existing bopsweep study, for ``worker`` and ``resume``, which never make one: a
        study deleted since they read it is refused (one line), not made again. A study made
        by bopsweep 0.1 gets its identity here (under the study's lock)."""
        with study_lock(self.engine, name):
            study = self.load(name)
            upgrade(self.engine, self.metrics.epochs, study_id(study), name)  # first: of 0.1 too
            if not study_uuid(study):  # made by bopsweep 0.1: it gets its identity now
                _give_identity(study, legacy=True)
        self.metrics.ensure_tables()
        return study

    def _create(self, spec: Any) -> tuple[optuna.Study, bool]:
        import optuna

        data = spec.to_dict()
        study = self.existing(spec)
        if study is not None:
            upgrade(self.engine, self.metrics.epochs, study_id(study), spec.name)  # of 0.1 too
            if study.user_attrs[SPEC_ATTR] != data:
                study.set_user_attr(SPEC_ATTR, data)  # e.g. a search's new total
            if not study_uuid(study):  # made by bopsweep 0.1: it gets its identity now
                _give_identity(study, legacy=True)
            return study, False
        if spec.name in self.study_names():  # left half made, by a command that was stopped
            study = self._optuna_study(spec.name)
        else:
            study = optuna.create_study(
                study_name=spec.name, storage=self.storage, direction="maximize"
            )
        # the identity first: the definition is what makes the study whole (_left_unmade)
        if not study_uuid(study):
            _give_identity(study, legacy=False)
        study.set_user_attr(C2I_ATTR, C2I_MEANING)  # what bopsweep 0.2.0 reads as version 1
        study.set_user_attr(SCHEMA_ATTR, current_version())
        study.set_user_attr(SPEC_ATTR, data)
        self.metrics.ensure_tables()  # now, not when two workers write their first rows
        return study, True

    @classmethod
    def open_if_made(cls, url: str) -> Store | None:
        """For a dry run: the database read-only if it exists with Optuna's tables, None if a
        run would make it (no file, an empty one, no tables yet). A path or database a run
        would refuse is refused the same way. Creates nothing: no file, table or lock."""
        path = sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create=True)  # reads only
            if not path.exists() or path.stat().st_size == 0:
                return None
        try:
            return cls.open_readonly(url)
        except NoStudyTables:
            return None

    def delete_study(self, name: str, running_allowed: bool = True) -> None:
        """Remove a study, its trials and their metric rows (and any orphan rows of studies
        deleted by other tools). Under the study's lock, as :meth:`join` and :meth:`create`
        are: a worker starting meanwhile finds the study whole or gone, never makes it again.
        Unless ``running_allowed``, refused (one line) if a trial runs, checked under it."""
        import optuna

        with study_lock(self.engine, name):
            study_id = self.storage.get_study_id_from_name(name)
            running = self.storage.get_all_trials(
                study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
            if running and not running_allowed:
                raise UserError(
                    f"study {name} has {len(running)} running trial(s) (a worker on another "
                    "machine?); stop its workers first"
                )
            # the study first: a crash after it leaves orphan rows, never attached to anything
            optuna.delete_study(study_name=name, storage=self.storage)
        self.metrics.delete_study_rows(study_id)


def _check_definition(study: optuna.Study) -> None:
    """A study's stored definition (which another tool may have written) is of the shape
    bopsweep reads, or one line naming the study; never a traceback later on."""
    try:
        spec_from_stored(study.user_attrs[SPEC_ATTR])
    except UserError as e:
        raise UserError(f"study {study.study_name!r}: {e}") from None


def _give_identity(study: optuna.Study, legacy: bool) -> None:
    """A new UUID for ``study``; ``legacy``: it was made by bopsweep 0.1 (flagged first, so a
    kill between the two writes leaves a study that is flagged again next time)."""
    if legacy:
        study.set_user_attr(LEGACY_ATTR, True)
    study.set_user_attr(UUID_ATTR, uuid.uuid4().hex)


def study_uuid(study: optuna.Study) -> str | None:
    """The study's identity (32 hex digits), or None if it has none (made by bopsweep 0.1, or a
    value another tool wrote that is no UUID: never trusted as a folder name)."""
    value = study.user_attrs.get(UUID_ATTR)
    return value if isinstance(value, str) and _UUID_HEX.fullmatch(value) else None


_UUID_HEX = re.compile(r"[0-9a-f]{32}")


def _check_sqlite_file(path: Path, create: bool, readonly: bool = False) -> None:
    if not path.exists():
        if not create:
            raise UserError(f"no such database: {path}")
        if not path.parent.is_dir():
            raise UserError(f"cannot create {path}: folder {path.parent} does not exist")
        return
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a database file")
    if path.stat().st_size == 0:
        if readonly:
            raise UserError(f"{path} is an empty file, not a bopsweep study database")
        return
    if not is_sqlite_file(path):
        raise UserError(
            f"{path} is not a SQLite database; give a .db file made by bopsweep (or a new path)"
        )
    try:
        tables = _table_names(path)
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot read the database {path}: {e}") from None
    if tables and not {"studies", "trials", "version_info"} <= tables and tables <= OWN_TABLES:
        # made in part: SQLite commits each CREATE TABLE on its own, so a command killed (or
        # out of disk) while it made them leaves some; the next run makes the rest
        if readonly or not create:
            raise NoStudyTables(
                f"{path} holds no bopsweep study: its tables were left half made (a command "
                "was stopped while it made them); run the study command to make them"
            )
    elif (tables or readonly) and not {"studies", "trials", "version_info"} <= tables:
        raise UserError(
            f"{path} is a database of another program (no Optuna tables); "
            "give a database made by bopsweep or a new path"
        )


# the tables Optuna (4.9–5.0) and bopsweep make: a file holding only some of them is one whose
# making was cut short, not another program's database
OWN_TABLES = {
    "alembic_version",
    "studies",
    "study_directions",
    "study_system_attributes",
    "study_user_attributes",
    "trial_heartbeats",
    "trial_intermediate_values",
    "trial_params",
    "trial_system_attributes",
    "trial_user_attributes",
    "trial_values",
    "trials",
    "version_info",
    *METRIC_TABLES,
}


def _table_names(path: Path) -> set[str]:
    """The tables of a SQLite file, read as every read-only command reads it."""
    try:
        with contextlib.closing(connect_readonly(path)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    except sqlite3.OperationalError as e:
        if _is_hot_journal(e, path):
            raise UserError(
                f"{path} holds a write that a killed process left unfinished "
                f"({path.name}-journal), which SQLite cannot roll back here (read-only); open "
                "the study once where the file and its folder can be written"
            ) from None
        raise
    return {r[0] for r in rows}


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection for commands that only read a SQLite file: ``PRAGMA query_only`` refuses
    every statement that would change it, and ``mode=rw`` never creates a file.

    Not ``mode=ro``, because of SQLite's crash recovery. A process killed while it committed
    (kill -9, power loss) leaves ``FILE-journal`` holding the pages it was overwriting: a "hot"
    journal, and the file's last committed state is the file with those pages put back. A
    connection that may write puts them back on its next read and deletes the journal (the
    committed data is unchanged: a hot journal is only ever rolled back); one opened with
    ``mode=ro`` refuses to read at all, so every command would refuse the study. On a read-only
    file system SQLite falls back to reading only, where a hot journal is refused
    (:func:`_is_hot_journal`) and anything else reads as before."""
    conn = sqlite3.connect(
        f"{_sqlite_file_uri(path)}?mode=rw", uri=True, timeout=60, check_same_thread=False
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


SQLITE_READONLY_ROLLBACK = 776  # SQLITE_READONLY | 3 << 8: a hot journal it may not roll back


def _is_hot_journal(e: Exception, path: Path) -> bool:
    """A read refused because a killed writer left a hot journal that this connection may not
    roll back (a read-only file system)."""
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code == SQLITE_READONLY_ROLLBACK)
    return "readonly database" in str(e) and Path(f"{path}-journal").exists()


def _sqlite_file_uri(path: Path) -> str:
    """A SQLite URI filename (special characters of the path escaped), without options."""
    return f"file:{quote(str(Path(path).resolve()))}"


def _engine_kwargs(url: str, readonly: bool, path: Path | None) -> dict[str, Any]:
    if path is not None and readonly:
        return {"creator": functools.partial(connect_readonly, path)}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if readonly and url.startswith(("postgresql", "postgres")):
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    return kwargs


def _is_write_refused(e: BaseException) -> bool:
    """A read-only open that failed because Optuna wanted to write (tables to make or upgrade,
    or its version row, missing when the command that made the file was killed early)."""
    cause = e.__cause__ or e.__context__
    text = " ".join(str(getattr(x, "orig", None) or x) for x in (e, cause) if x).lower()
    if 'relation "' in text and "does not exist" in text:  # PostgreSQL: no such table
        return True
    return any(s in text for s in ("readonly database", "read-only transaction", "no such table"))
