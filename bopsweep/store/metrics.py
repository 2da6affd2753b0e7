"""bopsweep's metric tables: per-epoch rows and per-epoch bundles of logged steps.

``bopsweep_epochs`` and ``bopsweep_steps`` hold one row per (trial, epoch), written in batches
by the driver alone. A row carries its trial's id *and* the trial's start time: ids are reused
(SQLite hands a deleted trial's id to the next trial, e.g. after ``optuna delete-study``), and a
row counts only while both match its trial, so a deleted trial's rows never attach to a new one
(the writer clears such orphans). The tables are made at the first write, so a refused command
leaves a database as it was; tables of bopsweep 0.1.0 (no start time) are upgraded in place by
the first writing command and read as they are by read-only ones.

Tables, their indexes and an upgrade are each made in one transaction
(:func:`bopsweep.store.sql.begin_now`): a
process killed half way leaves them as they were, and an upgrade an older bopsweep left half done
(its rows in ``<name>_legacy``) is finished by the next writing command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from bopsweep.store.fencing import check_owner
from bopsweep.store.legacy_metrics import legacy_tables, upgrade_legacy_tables
from bopsweep.store.legacy_reads import of_0_1
from bopsweep.store.metric_columns import projected, select_frame
from bopsweep.store.optuna_adapter import all_trials, write_intermediate_values
from bopsweep.store.optuna_adapter import study_id as study_id_of
from bopsweep.store.optuna_adapter import trial_id as trial_id_of
from bopsweep.store.sql import begin_now, insert_ignore
from bopsweep.trial.legacy_c2i import complement_frame, complement_row, complement_rows

# pandas and sqlalchemy: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TypeAlias

    import optuna
    import pandas as pd

    Trials: TypeAlias = "list[optuna.trial.FrozenTrial] | None"  # a study's, where already read

METRIC_TABLES = ("bopsweep_epochs", "bopsweep_steps")
T = TypeVar("T")
BATCH = 10_000  # metric rows fetched, and decoded, at a time


class MetricTables:
    """The metric tables of one database (``engine``); ``readonly``: never created or changed."""

    def __init__(self, storage: Any, readonly: bool) -> None:
        import sqlalchemy as sa

        self.storage, self.engine = storage, storage.engine
        meta = sa.MetaData()
        self.epochs = _metric_table(sa, meta, METRIC_TABLES[0])
        self.steps = _metric_table(sa, meta, METRIC_TABLES[1])
        present = set(sa.inspect(self.engine).get_table_names())
        if readonly:
            self._legacy = legacy_tables(self.engine, present, METRIC_TABLES)
            self._read_unfinished_upgrade(present)
        else:
            if upgrade_legacy_tables(self.engine, present, self.epochs, self.steps):
                present = set(sa.inspect(self.engine).get_table_names())
            self._legacy = set()
        self._absent = {name for name in METRIC_TABLES if name not in present}
        self._meta = meta

    def _read_unfinished_upgrade(self, present: set[str]) -> None:
        """For a read-only open of a table whose upgrade was left half done (only a writer may
        finish it): its rows are still in ``<name>_legacy``, read as a 0.1.0 table while the new
        one is empty or missing; rows in both are not merged here, and a line says so."""
        import sqlalchemy as sa

        for attr in ("epochs", "steps"):
            table = getattr(self, attr)
            old = f"{table.name}_legacy"
            if old not in present:
                continue
            empty = table.name not in present
            if not empty:
                with self.engine.connect() as conn:
                    empty = conn.execute(sa.select(table.c.id).limit(1)).first() is None
            if empty:
                setattr(self, attr, _metric_table(sa, sa.MetaData(), old))
                self._legacy.add(old)
            else:
                print(
                    f"bopsweep: the rows of {old} are not shown: an interrupted upgrade left "
                    "them there; the next command that writes to the database finishes it",
                    file=sys.stderr,
                )

    def write(
        self,
        study_id: int,
        trial_id: int,
        rows: list[dict[str, Any]],
        steps: dict[int, list[dict[str, Any]]],
        owner: str | None = None,
        curve: dict[int, float] | None = None,
    ) -> None:
        """Per-epoch rows and per-epoch bundles of step rows; an epoch already stored is kept.

        Rows are keyed on the trial's id and start time; rows of an earlier trial that had the
        same id (deleted since) are removed in the same transaction. ``owner``: the writer's
        token (:mod:`bopsweep.store.fencing`); the rows are written only while the trial is
        RUNNING under it, checked in the same transaction (else
        :class:`~bopsweep.store.fencing.TrialTakenOver`, and nothing is written). ``curve``:
        the trial's intermediate values for these epochs, written in the same transaction.
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
        self.ensure_tables()
        with self.engine.begin() as conn:
            if owner is not None:
                begin_now(conn)  # SQLite: the write lock before the check
                check_owner(conn, trial_id, owner)
            for table, values in ((self.epochs, epoch_rows), (self.steps, step_rows)):
                if values:
                    conn.execute(
                        sa.delete(table).where(
                            table.c.trial_id == trial_id,
                            sa.or_(table.c.trial_start.is_(None), table.c.trial_start != start),
                        )
                    )
                    conn.execute(self._insert_ignore(table), values)
            if curve:
                write_intermediate_values(conn, trial_id, curve)

    def stored_epochs(self, trial_id: int) -> list[int]:
        """The epochs stored for a trial as it is now (its id and start), in order."""
        import sqlalchemy as sa

        if self.epochs.name in self._absent:
            return []
        start = self.storage.get_trial(trial_id).datetime_start
        table = self.epochs
        q = sa.select(table.c.epoch).where(table.c.trial_id == trial_id)
        if self.epochs.name not in self._legacy:
            q = q.where(table.c.trial_start == start)
        with self.engine.connect() as conn:
            return sorted(e for (e,) in conn.execute(q))

    def ensure_tables(self) -> None:
        """Make the metric tables if they are missing, with their indexes in the same
        transaction. Several drivers may try at the same moment (two workers' first epochs): the
        one that loses finds them made."""
        if not self._absent:
            return
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                begin_now(conn)
                self._meta.create_all(conn)
        except sa.exc.DatabaseError:  # e.g. PostgreSQL's duplicate pg_type row, "already exists"
            present = set(sa.inspect(self.engine).get_table_names())
            if not set(METRIC_TABLES) <= present:
                raise
        self._absent = set()

    def _insert_ignore(self, table: Any) -> Any:
        return insert_ignore(table, self.engine.dialect.name)

    def epoch_counts(self, study: optuna.Study) -> dict[int, int]:
        """Epochs stored per trial id."""
        return {t: n for t, (n, _) in self.epoch_progress(study).items()}

    def epoch_progress(
        self, study: optuna.Study, trials: Trials = None
    ) -> dict[int, tuple[int, dict[str, Any]]]:
        """Per trial id: the number of epochs stored, and the row of the last one (counted by
        the database; only the last rows are read and parsed). ``trials``: the study's, where
        the caller has read them (each method here reads them otherwise)."""
        import sqlalchemy as sa

        table = self.epochs
        if table.name in self._absent:  # a plain Optuna database opened read-only
            return {}
        starts = self._starts(study, trials)
        legacy = table.name in self._legacy
        keys = [table.c.trial_id] + ([] if legacy else [table.c.trial_start])
        sid = study_id_of(study)
        # rows of the study's trials (their start tells a reused id's apart): counted in the
        # unique index on (trial_id, trial_start, epoch) alone; selected by study_id, every row
        # was read (0.6 s at 10,000 trials × 100 epochs, against 0.1 s)
        trial_ids: sa.Select[Any] = sa.select(sa.column("trial_id")).select_from(sa.table("trials"))
        mine = (
            table.c.study_id == sid
            if legacy
            else table.c.trial_id.in_(trial_ids.where(sa.column("study_id") == sid))
        )
        last = (
            sa.select(*keys, sa.func.count().label("n"), sa.func.max(table.c.epoch).label("last"))
            .where(mine)
            .group_by(*keys)
            .subquery()
        )
        same = [table.c.trial_id == last.c.trial_id, table.c.epoch == last.c.last]
        if not legacy:
            same.append(table.c.trial_start == last.c.trial_start)
        q = sa.select(*(last.c[k.name] for k in keys), last.c.n, table.c.data).select_from(
            last.join(table, sa.and_(*same))
        )

        def read() -> dict[int, tuple[int, dict[str, Any]]]:
            with self.engine.connect() as conn:
                return {
                    trial_id: (n, json.loads(data))
                    for trial_id, *start, n, data in conn.execute(q)
                    if trial_id in starts and (legacy or start[0] == starts[trial_id])
                }

        return _in_c2i_of_0_2(
            study, read, lambda got: {t: (n, complement_row(r)) for t, (n, r) in got.items()}
        )

    def epoch_rows(self, study: optuna.Study) -> dict[int, list[dict[str, Any]]]:
        """Per trial id, its per-epoch rows as stored (plain values, by epoch): for writers
        that need each row's own keys, not a frame's union of columns."""

        def read() -> dict[int, list[dict[str, Any]]]:
            rows: dict[int, list[tuple[int, str]]] = {}
            for trial_id, epoch, data in self._rows(self.epochs, study):
                rows.setdefault(trial_id, []).append((epoch, data))
            return {t: [json.loads(data) for _, data in sorted(r)] for t, r in rows.items()}

        return _in_c2i_of_0_2(
            study, read, lambda got: {t: complement_rows(r) for t, r in got.items()}
        )

    def epochs_frame(
        self, study: optuna.Study, trials: Trials = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per-epoch metrics of a study: one row per (trial, epoch). ``columns``: only these
        (and the keys), as floats (:func:`~bopsweep.store.metric_columns.projected`)."""

        def rows(row: dict[str, Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
            return tuple(row), [list(row.values())]

        return _in_c2i_of_0_2(
            study,
            lambda: self._selected(self.epochs, study, rows, trials, columns),
            complement_frame,
        )

    def steps_frame(
        self, study: optuna.Study, trials: Trials = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per-logged-step metrics of a study: one row per (trial, logged step). ``columns``:
        only these (and the keys), as floats."""

        def rows(bundle: dict[str, Any]) -> tuple[tuple[str, ...], list[list[Any]]]:
            return tuple(bundle["columns"]), bundle["rows"]

        return self._selected(self.steps, study, rows, trials, columns)

    def _selected(
        self,
        table: Any,
        study: optuna.Study,
        parse: Any,
        trials: Trials,
        columns: Sequence[str] | None,
    ) -> pd.DataFrame:
        """:meth:`_frame`, or where ``columns`` are chosen, those picked out by the database
        (:mod:`~bopsweep.store.metric_columns`; decoded here where it cannot)."""
        if columns is None:
            return self._frame(table, study, parse, trials)
        steps = table is self.steps
        if table.name not in self._absent:
            legacy = table.name in self._legacy
            frame = select_frame(
                self.engine, table.name, study_id_of(study), columns, legacy, steps
            )
            if frame is not None:
                return frame
        return projected(self._frame(table, study, parse, trials), columns, steps)

    def _rows(
        self, table: Any, study: optuna.Study, trials: Trials = None
    ) -> Iterator[tuple[int, int, str]]:
        """(trial id, epoch, data) of the rows that belong to the study's trials as they are
        now."""
        import sqlalchemy as sa

        if table.name in self._absent:  # a plain Optuna database opened read-only
            return
        starts = self._starts(study, trials)
        legacy = table.name in self._legacy  # written before rows carried their trial's start
        columns = [table.c.trial_id, table.c.epoch, table.c.data]
        columns += [] if legacy else [table.c.trial_start]
        q = sa.select(*columns).where(table.c.study_id == study_id_of(study))
        with self.engine.connect() as conn:
            for trial_id, epoch, data, *start in conn.execute(q).yield_per(BATCH):
                if trial_id in starts and (legacy or start[0] == starts[trial_id]):
                    yield trial_id, epoch, data

    @staticmethod
    def _starts(study: optuna.Study, trials: Trials = None) -> dict[int, Any]:
        """Each trial's start time, by trial id: what a row must match to belong to it."""
        if trials is None:
            trials = all_trials(study, intermediate_values=False)
        return {trial_id_of(t): t.datetime_start for t in trials}

    def _frame(
        self, table: Any, study: optuna.Study, parse: Any, trials: Trials = None
    ) -> pd.DataFrame:
        """The rows of ``table`` as one frame, with their trial's id; ``parse(decoded)`` gives a
        stored row's (or bundle's) column names and rows of values. Rows are gathered as lists
        by their columns (one frame per set of columns, nearly always one), not as a dict each:
        a study of 10,000 trials holds millions of rows; and decoded a batch at a time, as one
        JSON array (a fifth faster than one ``json.loads`` per row)."""
        import pandas as pd

        groups: dict[tuple[str, ...], tuple[list[int], list[list[Any]]]] = {}
        for batch in _batches(self._rows(table, study, trials)):
            decoded = json.loads("[" + ",".join(data for _, _, data in batch) + "]")
            for (t, _, _), doc in zip(batch, decoded, strict=True):
                columns, rows = parse(doc)
                ids, values = groups.setdefault(columns, ([], []))
                ids.extend([t] * len(rows))
                values.extend(rows)
        if not groups:
            return pd.DataFrame()
        frames = []
        for columns, (ids, values) in groups.items():
            part = pd.DataFrame(values, columns=list(columns))
            part.insert(0, "trial_id", ids)
            frames.append(part)
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False)
        keys = ["trial_id", "epoch"] + (["step"] if "step" in frame else [])
        return frame.sort_values(keys, ignore_index=True)

    def delete_study_rows(self, study_id: int) -> None:
        """Remove a study's rows, and any orphan rows of trials deleted by other tools."""
        import sqlalchemy as sa

        live: sa.Select[Any] = sa.select(sa.literal_column("trial_id")).select_from(
            sa.table("trials")
        )
        with self.engine.begin() as conn:
            for table in (self.epochs, self.steps):
                if table.name in self._absent:
                    continue
                conn.execute(
                    sa.delete(table).where(
                        sa.or_(table.c.study_id == study_id, table.c.trial_id.not_in(live))
                    )
                )


def _in_c2i_of_0_2(study: optuna.Study, read: Callable[[], T], complement: Callable[[T], T]) -> T:
    """What ``read()`` returns, with C2I as 0.2 stores it: complemented for a study of 0.1 not
    yet converted (:mod:`~bopsweep.store.c2i_upgrade`). A writer may convert the study while
    this reads; a conversion is one transaction and one way, so rows read between two looks
    at the study that both say "not converted" are old ones, and otherwise they are read again,
    converted."""
    if not of_0_1(study.user_attrs):
        return read()
    got = read()
    return complement(got) if of_0_1(study.user_attrs) else read()


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


def _batches(rows: Iterator[tuple[int, int, str]]) -> Iterator[list[tuple[int, int, str]]]:
    """``rows`` in lists of :data:`BATCH` (itertools.batched is Python 3.12)."""
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _bundle(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in rows]}
