"""Where studies live: Optuna's RDB storage plus bopsweep's metric tables, in one database.

``sqlite:///study.db`` is the embedded default (or ``$BOPSWEEP_STORAGE``); a PostgreSQL or
MySQL URL lets several machines share a study. One Optuna study per bopsweep study; its user
attribute ``bopsweep_spec`` holds the study's definition, so ``bopsweep resume`` needs nothing
else. Each trial's params are plain values (any Optuna tool reads them); its user attributes
hold the configuration id, the full configuration and, when it ends, its results or the reason
it failed. Per-epoch metrics and per-epoch bundles of logged steps go to ``bopsweep_epochs``
and ``bopsweep_steps``, one row per (trial, epoch), written in batches by the driver alone.
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

if TYPE_CHECKING:
    import optuna
    import pandas as pd

DEFAULT_STORAGE = "sqlite:///study.db"
SPEC_ATTR = "bopsweep_spec"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_URL = re.compile(r"^(sqlite|postgresql|postgres|mysql)(\+\w+)?://")


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
    return url


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password removed, wherever it appears."""
    match = re.search(r"://[^:/@]+:([^@]*)@", url)
    text = redact(text)
    return text.replace(match.group(1), "***") if match and match.group(1) else text


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def checkpoint_root(url: str, study: str, override: Path | None = None) -> Path:
    """Trial run folders: ``--checkpoint-dir``, else next to a SQLite file (``study.ckpt/``)."""
    if override is not None:
        return (Path(override) / study).resolve()
    path = sqlite_path(url)
    base = path.with_suffix(".ckpt") if path is not None else Path("bopsweep.ckpt")
    return (base / study).resolve()


class Store:
    """An open database: Optuna's storage and bopsweep's metric tables."""

    def __init__(
        self, url: str, create: bool = False, heartbeat: tuple[int, int, int] | None = None
    ) -> None:
        """Open ``url``; ``heartbeat`` = (interval s, grace period s, retries) turns on Optuna's
        RDB heartbeat, whose stale trials (of a driver that died) are failed and re-queued by
        Optuna's retry callback."""
        self.url = url
        path = sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path, create)
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
                    url, engine_kwargs=_engine_kwargs(url), **beat
                )
        except ImportError:
            raise UserError(
                f"the database driver for {redact(url)} is not installed; install it with: "
                "pip install 'bopsweep[postgres]' (PostgreSQL) or pip install pymysql (MySQL)"
            ) from None
        except Exception as e:  # SQLAlchemy / driver errors: unreachable, refused, not a database
            raise UserError(
                f"cannot open the database {redact(url)}: {scrub(first_line(e), url)}"
            ) from None
        self.engine = self.storage.engine
        meta = sa.MetaData()
        self.epochs = _metric_table(sa, meta, "bopsweep_epochs")
        self.steps = _metric_table(sa, meta, "bopsweep_steps")
        meta.create_all(self.engine)

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
        """Per-epoch rows and per-epoch bundles of step rows; an epoch already stored is kept."""
        epoch_rows = [
            {"study_id": study_id, "trial_id": trial_id, "epoch": r["epoch"], "data": json.dumps(r)}
            for r in rows
        ]
        step_rows = [
            {
                "study_id": study_id,
                "trial_id": trial_id,
                "epoch": epoch,
                "data": json.dumps(_bundle(srows)),
            }
            for epoch, srows in steps.items()
            if srows
        ]
        with self.engine.begin() as conn:
            for table, values in ((self.epochs, epoch_rows), (self.steps, step_rows)):
                if values:
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
        return insert(table).on_conflict_do_nothing(index_elements=["trial_id", "epoch"])

    def epoch_counts(self, study_id: int) -> dict[int, int]:
        """Epochs stored per trial id."""
        import sqlalchemy as sa

        q = (
            sa.select(self.epochs.c.trial_id, sa.func.count())
            .where(self.epochs.c.study_id == study_id)
            .group_by(self.epochs.c.trial_id)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(q).all())

    def epochs_frame(self, study_id: int) -> pd.DataFrame:
        """Per-epoch metrics of a study: one row per (trial, epoch)."""
        return self._frame(self.epochs, study_id, lambda data: [json.loads(data)])

    def steps_frame(self, study_id: int) -> pd.DataFrame:
        """Per-logged-step metrics of a study: one row per (trial, logged step)."""

        def rows(data: str) -> list[dict[str, Any]]:
            bundle = json.loads(data)
            return [dict(zip(bundle["columns"], r)) for r in bundle["rows"]]

        return self._frame(self.steps, study_id, rows)

    def _frame(self, table: Any, study_id: int, parse: Any) -> pd.DataFrame:
        import pandas as pd
        import sqlalchemy as sa

        q = sa.select(table.c.trial_id, table.c.data).where(table.c.study_id == study_id)
        with self.engine.connect() as conn:
            records = [{"trial_id": t, **row} for t, data in conn.execute(q) for row in parse(data)]
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            return frame
        keys = ["trial_id", "epoch"] + (["step"] if "step" in frame else [])
        return frame.sort_values(keys, ignore_index=True)


@contextlib.contextmanager
def driver_lock(url: str) -> Iterator[None]:
    """One driver per SQLite file: SQLite cannot arbitrate between two (no SELECT … FOR UPDATE)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as f:
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


def _check_sqlite_file(path: Path, create: bool) -> None:
    if not path.exists():
        if not create:
            raise UserError(f"no such database: {path}")
        if not path.parent.exists():
            raise UserError(f"cannot create {path}: folder {path.parent} does not exist")
        return
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a database file")
    if path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        if f.read(16) != _SQLITE_MAGIC:
            raise UserError(
                f"{path} is not a SQLite database; give a .db file made by bopsweep (or a new path)"
            )
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot read the database {path}: {e}") from None
    if tables and not {"studies", "trials", "version_info"} <= tables:
        raise UserError(
            f"{path} is a database of another program (no Optuna tables); "
            "give a database made by bopsweep or a new path"
        )


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _metric_table(sa: Any, meta: Any, name: str) -> Any:
    return sa.Table(
        name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_id", sa.Integer, nullable=False, index=True),
        sa.Column("trial_id", sa.Integer, nullable=False, index=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("trial_id", "epoch", name=f"{name}_trial_epoch"),
    )


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
