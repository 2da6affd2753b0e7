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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from bopsweep.store.fencing import check_owner
from bopsweep.store.legacy_metrics import legacy_tables, unfinished_upgrade, upgrade_legacy_tables
from bopsweep.store.legacy_reads import of_0_1
from bopsweep.store.metric_columns import projected, select_frame
from bopsweep.store.metric_frames import BATCH, decoded_frame
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
        """For a read-only open: a table whose upgrade was left half done is read from its
        ``<name>_legacy`` rows (:func:`~bopsweep.store.legacy_metrics.unfinished_upgrade`)."""
        import sqlalchemy as sa

        for attr in ("epochs", "steps"):
            old = unfinished_upgrade(self.engine, getattr(self, attr), present)
            if old is not None:
                setattr(self, attr, _metric_table(sa, sa.MetaData(), old))
                self._legacy.add(old)

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
        epoch_rows, step_rows = _encoded(key, rows, steps)
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

        table = self.epochs
        if table.name in self._absent:  # a plain Optuna database opened read-only
            return {}
        starts = self._starts(study, trials)
        legacy = table.name in self._legacy
        q = _last_epochs(table, study_id_of(study), legacy)

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
        """The rows of ``table`` as one frame, with their trial's id
        (:func:`~bopsweep.store.metric_frames.decoded_frame`)."""
        return decoded_frame(self._rows(table, study, trials), parse)

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


def _encoded(
    key: dict[str, Any], rows: list[dict[str, Any]], steps: dict[int, list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The table rows that store a trial's epoch rows and its epochs' step bundles, under
    ``key`` (its study, id and start)."""
    epoch_rows = [{**key, "epoch": r["epoch"], "data": json.dumps(r)} for r in rows]
    step_rows = [
        {**key, "epoch": epoch, "data": json.dumps(_bundle(srows))}
        for epoch, srows in steps.items()
        if srows
    ]
    return epoch_rows, step_rows


def _bundle(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = list(rows[0])
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in rows]}


def _last_epochs(table: Any, sid: int, legacy: bool) -> Any:
    """The query behind :meth:`MetricTables.epoch_progress`: per trial of study ``sid`` (and
    its start, unless ``legacy``), its trial id, the number of epochs stored and the last one's
    data."""
    import sqlalchemy as sa

    keys = [table.c.trial_id] + ([] if legacy else [table.c.trial_start])
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
    return sa.select(*(last.c[k.name] for k in keys), last.c.n, table.c.data).select_from(
        last.join(table, sa.and_(*same))
    )
