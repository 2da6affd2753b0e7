"""Where studies live: Optuna's RDB storage plus bopsweep's metric tables, in one database.

``sqlite:///study.db`` is the embedded default (or ``$BOPSWEEP_STORAGE``); a PostgreSQL or
MySQL URL lets several machines share a study. One Optuna study per bopsweep study; its user
attribute ``bopsweep_spec`` holds the study's definition, so ``bopsweep resume`` needs nothing
else. Each trial's params are plain values (any Optuna tool reads them); its user attributes
hold the configuration id, the full configuration and, when it ends, its results or the reason
it failed. Per-epoch metrics and per-epoch bundles of logged steps go to ``bopsweep_epochs``
and ``bopsweep_steps``, one row per (trial, epoch), written in batches by the driver alone.

Integrity rules:

* A metric row carries its trial's id *and* the trial's start time. Ids are reused: SQLite
  hands a deleted trial's id to the next trial, e.g. after ``optuna delete-study``. A row
  counts only while both match its trial, so a deleted trial's rows never attach to a new one
  (and the writer clears such orphans).
* Commands that only read (``status``, ``studies``, ``plot``, ``export``) open the database
  read-only (:meth:`Store.open_readonly`): SQLite's ``mode=ro``, a read-only PostgreSQL
  session, no table created, not a byte changed; a read-only file system is fine.
* One driver per SQLite file (:func:`driver_lock`), keyed on the file itself: symlinks are
  resolved and URL options ignored, so no alias of a database runs a second driver.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.errors import UserError
from bopsweep.files import is_sqlite_file

if TYPE_CHECKING:
    import optuna
    import pandas as pd

DEFAULT_STORAGE = "sqlite:///study.db"
SPEC_ATTR = "bopsweep_spec"
METRIC_TABLES = ("bopsweep_epochs", "bopsweep_steps")
_URL = re.compile(r"^(sqlite|postgresql|postgres|mysql)(\+\w+)?://")
# URL query keys that carry a secret (libpq and the MySQL drivers accept passwords there too)
_SECRET_KEYS = {"password", "passwd", "pwd", "sslpassword", "token", "secret"}
# whatever stands between '://user:' and '@', also in text that is no parsable URL
_AUTH = re.compile(r"(://[^:/@?#\s]*:)[^@/?#\s]*@")
_SECRET_OPTION = re.compile(rf"\b((?:{'|'.join(_SECRET_KEYS)})\s*=\s*)[^&\s'\"]+", re.IGNORECASE)


def storage_url(storage: str | None = None, database: Path | None = None) -> str:
    """The storage to use: a positional database path, ``--storage``, $BOPSWEEP_STORAGE, default."""
    if database is not None and storage is not None:
        raise UserError("give the database either as a path or as --storage, not both")
    if database is not None:
        return f"sqlite:///{database}"
    url = storage or os.environ.get("BOPSWEEP_STORAGE") or DEFAULT_STORAGE
    if not _URL.match(url):
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return f"sqlite:///{url}"
        raise UserError(
            f"{redact(url)} is not a database URL; use sqlite:///FILE.db or "
            "postgresql://USER:PASSWORD@HOST/DB"
        )
    _parse(url)  # malformed URLs are refused here, not deep inside SQLAlchemy
    return url


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"cannot read the database URL {redact(url)}") from None


def _secrets(url: str) -> list[str]:
    """The URL's password and secret query values, as written and as URL-encoded."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL: only the pattern of _AUTH applies
        return []
    values = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in _SECRET_KEYS:
            values += [value] if isinstance(value, str) else list(value)
    return [v for value in values for v in {value, quote(value, safe=""), quote_plus(value)}]


def redact(url: str) -> str:
    """The URL with its password (in the authority or the query string) replaced by ***."""
    return scrub(url, url)


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's secrets masked: wherever a URL or a ``password=`` option holds
    one, and a long secret (8+ characters) anywhere as a whole word. A short one is masked only
    in those places, so it cannot mangle the words of the message around it."""
    text = _SECRET_OPTION.sub(r"\1***", _AUTH.sub(r"\1***@", text))
    for secret in sorted(set(_secrets(url)), key=len, reverse=True):
        text = text.replace(f":{secret}@", ":***@")  # in a URL, whatever characters it holds
        if len(secret) >= 8:
            text = re.sub(rf"(?<![\w%]){re.escape(secret)}(?![\w%])", "***", text)
    return text


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (query options such as ``?timeout=30`` stripped);
    None for other databases and for SQLite in memory."""
    if not url.startswith("sqlite"):
        return None
    database = _parse(url).database
    if database and database.startswith("file:"):  # a SQLite URI filename (uri=true)
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


def database_file(url: str) -> Path | None:
    """The real file behind a SQLite URL: symlinks resolved, so every alias names one file."""
    path = sqlite_path(url)
    return Path(os.path.realpath(path)) if path is not None else None


def checkpoint_root(url: str, study: str, override: Path | None = None) -> Path:
    """Trial run folders: ``--checkpoint-dir``, else next to a SQLite file (``study.ckpt/``)."""
    if override is not None:
        return (Path(override) / study).resolve()
    path = database_file(url)
    base = path.with_suffix(".ckpt") if path is not None else Path("bopsweep.ckpt")
    return (base / study).resolve()


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
        import sqlalchemy as sa

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                beat = {}
                if heartbeat is not None:
                    interval, grace, retries = heartbeat
                    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
                    beat = {
                        "heartbeat_interval": interval,
                        "grace_period": grace,
                        "heartbeat_stale_trial_callback": retry,
                    }
                self.storage = optuna.storages.RDBStorage(
                    _readonly_url(url, path) if readonly else url,
                    engine_kwargs=_engine_kwargs(url, readonly),
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
                raise UserError(
                    f"{redact(url)} holds no bopsweep study (its Optuna tables are missing, "
                    "unfinished or of another version); run the study command to make one"
                ) from None
            raise UserError(
                f"cannot open the database {redact(url)}: {scrub(first_line(e), url)}"
            ) from None
        self.engine = self.storage.engine
        meta = sa.MetaData()
        self.epochs = _metric_table(sa, meta, METRIC_TABLES[0])
        self.steps = _metric_table(sa, meta, METRIC_TABLES[1])
        present = set(sa.inspect(self.engine).get_table_names())
        if readonly:
            self._legacy = _legacy_tables(self.engine, present)
            self._absent = {name for name in METRIC_TABLES if name not in present}
        else:  # tables made at the first write: a refused command leaves the file as it was
            _upgrade_legacy_tables(self.engine, present, self.epochs, self.steps)
            self._legacy = set()
            self._absent = {name for name in METRIC_TABLES if name not in present}
        self._meta = meta

    @classmethod
    def open_readonly(cls, url: str) -> Store:
        """For commands that only read: no table is created and no byte changes (SQLite opened
        with ``mode=ro``; PostgreSQL in a read-only session), so it works on a read-only file
        system and leaves a plain Optuna database as it was."""
        return cls(url, readonly=True)

    # --- studies ------------------------------------------------------------------------------
    def study_names(self) -> list[str]:
        return [s.study_name for s in self.storage.get_all_studies()]

    def bopsweep_studies(self) -> list[str]:
        return [s.study_name for s in self.storage.get_all_studies() if SPEC_ATTR in s.user_attrs]

    def load(self, name: str | None) -> optuna.Study:
        """An existing bopsweep study; with no name, the database's only one."""
        import optuna

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
            raise UserError(
                f"no bopsweep study named {name!r} in {redact(self.url)}"
                + (f"; it holds: {', '.join(names)}" if names else "")
            )
        return optuna.load_study(study_name=name, storage=self.storage)

    def create(self, spec: Any) -> tuple[optuna.Study, bool]:
        """The study for ``spec`` (a StudySpec), created if new; (study, created)."""
        import optuna

        data = spec.to_dict()
        if spec.name in self.study_names():
            study = optuna.load_study(study_name=spec.name, storage=self.storage)
            stored = study.user_attrs.get(SPEC_ATTR)
            if stored is None:
                raise UserError(
                    f"{spec.name!r} in {redact(self.url)} is an Optuna study not made "
                    "by bopsweep; choose another --study name"
                )
            if _comparable(stored) != _comparable(data):
                raise UserError(
                    f"study {spec.name!r} already exists with a different definition; "
                    "resume it with 'bopsweep resume', or choose another --study name"
                )
            if stored != data:
                study.set_user_attr(SPEC_ATTR, data)  # e.g. a search's new total
            return study, False
        study = optuna.create_study(
            study_name=spec.name, storage=self.storage, direction="maximize"
        )
        study.set_user_attr(SPEC_ATTR, data)
        return study, True

    # --- metrics --------------------------------------------------------------------------------
    def write_metrics(
        self,
        study_id: int,
        trial_id: int,
        rows: list[dict[str, Any]],
        steps: dict[int, list[dict[str, Any]]],
    ) -> None:
        """Per-epoch rows and per-epoch bundles of step rows; an epoch already stored is kept.

        Rows are keyed on the trial's id and start time; rows of an earlier trial that had the
        same id (deleted since) are removed in the same transaction.
        """
        import sqlalchemy as sa

        start = self.storage.get_trial(trial_id).datetime_start
        key = {"study_id": study_id, "trial_id": trial_id, "trial_start": start}
        epoch_rows = [{**key, "epoch": r["epoch"], "data": json.dumps(r)} for r in rows]
        step_rows = [
            {**key, "epoch": epoch, "data": json.dumps(_bundle(srows))}
            for epoch, srows in steps.items()
            if srows
        ]
        if self._absent:
            self._meta.create_all(self.engine)
            self._absent = set()
        with self.engine.begin() as conn:
            for table, values in ((self.epochs, epoch_rows), (self.steps, step_rows)):
                if values:
                    conn.execute(
                        sa.delete(table).where(
                            table.c.trial_id == trial_id,
                            sa.or_(table.c.trial_start.is_(None), table.c.trial_start != start),
                        )
                    )
                    conn.execute(self._insert_ignore(table), values)

    def _insert_ignore(self, table: Any) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy import insert

            return insert(table).prefix_with("IGNORE")
        return insert(table).on_conflict_do_nothing(
            index_elements=["trial_id", "trial_start", "epoch"]
        )

    def epoch_counts(self, study: optuna.Study) -> dict[int, int]:
        """Epochs stored per trial id."""
        counts: dict[int, int] = {}
        for trial_id, _ in self._rows(self.epochs, study):
            counts[trial_id] = counts.get(trial_id, 0) + 1
        return counts

    def epochs_frame(self, study: optuna.Study) -> pd.DataFrame:
        """Per-epoch metrics of a study: one row per (trial, epoch)."""
        return self._frame(self.epochs, study, lambda data: [json.loads(data)])

    def steps_frame(self, study: optuna.Study) -> pd.DataFrame:
        """Per-logged-step metrics of a study: one row per (trial, logged step)."""

        def rows(data: str) -> list[dict[str, Any]]:
            bundle = json.loads(data)
            return [dict(zip(bundle["columns"], r)) for r in bundle["rows"]]

        return self._frame(self.steps, study, rows)

    def _rows(self, table: Any, study: optuna.Study) -> Iterator[tuple[int, str]]:
        """(trial id, data) of the rows that belong to the study's trials as they are now."""
        import sqlalchemy as sa

        if table.name in self._absent:  # a plain Optuna database opened read-only
            return
        starts = {t._trial_id: t.datetime_start for t in study.get_trials(deepcopy=False)}
        legacy = table.name in self._legacy  # written before rows carried their trial's start
        columns = [table.c.trial_id, table.c.data] + ([] if legacy else [table.c.trial_start])
        q = sa.select(*columns).where(table.c.study_id == study._study_id)
        with self.engine.connect() as conn:
            for trial_id, data, *start in conn.execute(q):
                if trial_id in starts and (legacy or start[0] == starts[trial_id]):
                    yield trial_id, data

    def _frame(self, table: Any, study: optuna.Study, parse: Any) -> pd.DataFrame:
        import pandas as pd

        records = [
            {"trial_id": t, **row} for t, data in self._rows(table, study) for row in parse(data)
        ]
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            return frame
        keys = ["trial_id", "epoch"] + (["step"] if "step" in frame else [])
        return frame.sort_values(keys, ignore_index=True)

    def delete_study(self, name: str) -> None:
        """Remove a study, its trials and their metric rows (and any orphan rows of studies
        deleted by other tools)."""
        import optuna
        import sqlalchemy as sa

        study_id = self.storage.get_study_id_from_name(name)
        # the study first: a crash after it leaves orphan rows, which never attach to anything
        optuna.delete_study(study_name=name, storage=self.storage)
        live = sa.select(sa.literal_column("trial_id")).select_from(sa.table("trials"))
        with self.engine.begin() as conn:
            for table in (self.epochs, self.steps):
                if table.name in self._absent:
                    continue
                conn.execute(
                    sa.delete(table).where(
                        sa.or_(table.c.study_id == study_id, table.c.trial_id.not_in(live))
                    )
                )


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: SQLite cannot arbitrate between two (no SELECT … FOR UPDATE).

    The lock belongs to the real file (symlinks resolved, URL options ignored), so
    ``link.db`` or ``sqlite:///study.db?timeout=30`` cannot start a second driver on study.db.
    Every command that writes trials takes it.
    """
    path = database_file(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        f = lock_path.open("a")
    except OSError as e:
        raise UserError(f"cannot write next to the database {path}: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another bopsweep driver is running on {path} (it holds {lock_path}); "
                "wait for it to finish or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(_sqlite_uri(path), uri=True)) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot read the database {path}: {e}") from None
    if (tables or readonly) and not {"studies", "trials", "version_info"} <= tables:
        raise UserError(
            f"{path} is a database of another program (no Optuna tables); "
            "give a database made by bopsweep or a new path"
        )


def _sqlite_uri(path: Path) -> str:
    """A read-only SQLite URI filename (special characters of the path escaped)."""
    from urllib.parse import quote

    return f"file:{quote(str(Path(path).resolve()))}?mode=ro"


def _readonly_url(url: str, path: Path | None) -> str:
    if path is None:
        return url
    from sqlalchemy.engine import URL

    query = {k: v for k, v in _parse(url).query.items() if k not in ("mode", "uri")}
    database = _sqlite_uri(path)
    return URL.create("sqlite", database=database, query={**query, "uri": "true"}).render_as_string(
        hide_password=False
    )


def _engine_kwargs(url: str, readonly: bool = False) -> dict[str, Any]:
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


def _metric_table(sa: Any, meta: Any, name: str) -> Any:
    return sa.Table(
        name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, nullable=False, index=True),
        sa.Column("trial_id", sa.Integer, nullable=False, index=True),
        # the trial's datetime_start: with trial_id, a key no later trial can share
        sa.Column("trial_start", sa.DateTime, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("trial_id", "trial_start", "epoch", name=f"{name}_trial_key_epoch"),
    )


def _legacy_tables(engine: Any, present: set[str]) -> set[str]:
    """Metric tables of bopsweep 0.1.0 databases, whose rows lack their trial's start time."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    return {
        name
        for name in METRIC_TABLES
        if name in present and "trial_start" not in {c["name"] for c in inspector.get_columns(name)}
    }


def _upgrade_legacy_tables(engine: Any, present: set[str], *tables: Any) -> None:
    """Give the rows of a legacy metric table their trial's start time, in one transaction.

    Rows whose trial is gone (deleted by another tool) are dropped: they could only ever attach
    to a later trial that reused the id. Reads Optuna's ``trials`` table directly, once.
    """
    import sqlalchemy as sa

    legacy = _legacy_tables(engine, present)
    if not legacy:
        return
    trials = sa.table(
        "trials", sa.column("trial_id", sa.Integer), sa.column("datetime_start", sa.DateTime)
    )
    with engine.begin() as conn:
        for table in tables:
            if table.name not in legacy:
                continue
            old = sa.Table(table.name, sa.MetaData(), autoload_with=conn)
            for index in old.indexes:  # the new table's indexes take these names
                index.drop(conn)
            conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {table.name}_legacy"))
            old = sa.Table(f"{table.name}_legacy", sa.MetaData(), autoload_with=conn)
            table.create(conn)
            columns = ["study_id", "trial_id", "trial_start", "epoch", "data"]
            rows = (
                sa.select(
                    old.c.study_id, old.c.trial_id, trials.c.datetime_start, old.c.epoch, old.c.data
                )
                .select_from(old.join(trials, trials.c.trial_id == old.c.trial_id))
                .order_by(old.c.id)
            )
            conn.execute(sa.insert(table).from_select(columns, rows))
            old.drop(conn)


def _bundle(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in rows]}


def _comparable(spec: dict[str, Any]) -> str:
    """A spec without the settings that only say where it runs (data path, device)."""
    data = json.loads(json.dumps(spec))
    for key in ("data_dir", "device", "download"):
        data["base"].pop(key, None)
    data["meta"].pop("trials", None)  # a search's total may grow: the study is topped up
    return json.dumps(data, sort_keys=True)


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__
