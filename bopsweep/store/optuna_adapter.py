"""The one place that reaches past Optuna's public API.

Optuna's public ``Study`` and ``FrozenTrial`` do not expose the storage a study lives in, nor
the database ids of studies and trials; bopsweep needs all three: to claim a WAITING trial
atomically (``storage.set_trial_state_values``), to record heartbeats and intermediate values
of trials that run in other processes, and to key its metric rows; and, to queue a large grid
in one transaction, Optuna's RDB models (:func:`add_waiting_trials`). Everything else goes through
the storage's public methods. Tested against the Optuna versions ``pyproject.toml`` admits.
"""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import CONFIG_ID

# optuna and sqlalchemy: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import TypeAlias

    import optuna
    from optuna.storages import BaseStorage
    from optuna.study._frozen import FrozenStudy  # not exported by optuna.study

    Rows: TypeAlias = "dict[str, dict[int, list[tuple]]]"  # per table, by trial id


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study lives in."""
    return study._storage


def engine_of(study: optuna.Study) -> Any:
    """The SQLAlchemy engine of a study's RDB storage, or None for another storage."""
    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)  # the RDB storage behind Optuna's cache
    return getattr(backend, "engine", None)


def study_id(study: optuna.Study | FrozenStudy) -> int:
    """The database id of a study (the ``study_id`` column of bopsweep's metric tables)."""
    return study._study_id


def trial_id(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The database id of a trial, unique in its storage (unlike its number)."""
    return trial._trial_id


def add_waiting_trials(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> None:
    """``study.add_trials(trials)`` for WAITING trials made by ``optuna.trial.create_trial``
    (params, distributions and user attributes; nothing else), numbered in order.

    On an RDB storage all of them go in one transaction: ``add_trial`` makes some twenty queries
    per trial (each param checked against the study's), so queueing 10,000 took minutes. The
    rows are those Optuna writes (its models), the numbers counted as Optuna counts them, under
    its lock of the study's row. The caller makes the distributions compatible with those the
    study stores (:func:`bopsweep.driver.queue.fit_stored`).
    """
    from optuna.storages import RDBStorage

    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)  # the RDB storage behind Optuna's cache
    if not isinstance(backend, RDBStorage) or not trials:
        study.add_trials(trials)
        return
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    sid = study_id(study)
    with _create_scoped_session(backend.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(sid, session, for_update=True)
        rows = [models.TrialModel(study_id=sid, number=None, state=t.state) for t in trials]
        session.add_all(rows)
        session.flush()  # their ids
        first = rows[0].count_past_trials(session)
        for i, row in enumerate(rows):
            row.number = first + i
        params = [
            {
                "trial_id": row.trial_id,
                "param_name": name,
                "param_value": t.distributions[name].to_internal_repr(value),
                "distribution_json": distribution_to_json(t.distributions[name]),
            }
            for row, t in zip(rows, trials)
            for name, value in t.params.items()
        ]
        attrs = [
            {"trial_id": row.trial_id, "key": key, "value_json": json.dumps(value)}
            for row, t in zip(rows, trials)
            for key, value in t.user_attrs.items()
        ]
        if params:
            session.execute(sa.insert(models.TrialParamModel.__table__), params)
        if attrs:
            session.execute(sa.insert(models.TrialUserAttributeModel.__table__), attrs)


def write_intermediate_values(conn: Any, trial_id: int, values: dict[int, float]) -> None:
    """A trial's intermediate values (its learning curve, by step), written on ``conn`` in the
    caller's transaction as Optuna's ``set_trial_intermediate_value`` writes them: with the
    trial's metric rows, under one ownership check (:mod:`bopsweep.store.fencing`)."""
    if not values:
        return
    import sqlalchemy as sa
    from optuna.storages._rdb import models

    table = models.TrialIntermediateValueModel.__table__
    to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
    conn.execute(
        sa.delete(table).where(table.c.trial_id == trial_id, table.c.step.in_(list(values)))
    )
    rows = []
    for step, value in values.items():
        stored, kind = to_stored(value)
        rows.append(
            {
                "trial_id": trial_id,
                "step": step,
                "intermediate_value": stored,
                "intermediate_value_type": kind,
            }
        )
    conn.execute(sa.insert(table), rows)


def waiting_trial_ids(study: optuna.Study, page: int = 64) -> Iterator[int]:
    """The ids of the study's WAITING trials, oldest first, read ``page`` at a time without
    loading the trials: a claim takes the first it can, so at most a page is read per claim
    however many are queued (by the index ``ix_bopsweep_trials_state`` where a driver made it).

    Optuna's cache reloads every unfinished trial (params, attributes) on each
    ``get_trials``: with 10,000 queued, claiming one read all of them, each time.
    """
    import optuna
    from optuna.storages import RDBStorage

    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        waiting = optuna.trial.TrialState.WAITING
        trials = storage.get_all_trials(study_id(study), deepcopy=False, states=(waiting,))
        yield from (trial_id(t) for t in sorted(trials, key=lambda t: t.number))
        return
    import sqlalchemy as sa

    query = sa.text(
        "SELECT trial_id FROM trials WHERE study_id = :s AND state = 'WAITING' "
        "AND trial_id > :after ORDER BY trial_id LIMIT :page"
    )
    after = 0
    while True:  # numbers follow ids within a study: both count up as trials are made
        with backend.engine.connect() as conn:
            values = {"s": study_id(study), "after": after, "page": page}
            ids = [tid for (tid,) in conn.execute(query, values)]
        yield from ids
        if len(ids) < page:
            return
        after = ids[-1]


def set_trial_user_attrs(study: optuna.Study, tid: int, attrs: Mapping[str, Any]) -> None:
    """Set a trial's user attributes in one transaction, as Optuna sets one (its own
    ``_set_trial_attr_without_commit``, which refuses a finished trial). Optuna's storage
    commits each key on its own: a trial's end wrote its 8 attributes in 8 commits, each an
    fsync on SQLite, while the driver's loop waited; and a kill between them left some."""
    from optuna.storages import RDBStorage

    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)  # Optuna's cache passes these writes on
    if not isinstance(backend, RDBStorage):
        for key, value in attrs.items():
            storage.set_trial_user_attr(tid, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(
                session, models.TrialUserAttributeModel, tid, key, value
            )


def running_config_ids(study: optuna.Study) -> set[str]:
    """The configuration ids of the study's RUNNING trials, read without loading the trials
    (by the index ``ix_bopsweep_trials_state`` where a driver made it)."""
    import sqlalchemy as sa

    engine = engine_of(study)
    if engine is None:
        import optuna

        running = storage_of(study).get_all_trials(
            study_id(study), deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
        )
        return {str(t.user_attrs[CONFIG_ID]) for t in running if CONFIG_ID in t.user_attrs}
    query = sa.text(
        "SELECT a.value_json FROM trials t JOIN trial_user_attributes a "
        "ON a.trial_id = t.trial_id AND a.key = :key "
        "WHERE t.study_id = :s AND t.state = 'RUNNING'"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"s": study_id(study), "key": CONFIG_ID})
        return {str(json.loads(value)) for (value,) in rows}


def running_without_heartbeat(study: optuna.Study) -> list[int]:
    """The ids of the study's RUNNING trials that have no heartbeat row at all (an RDB storage
    with heartbeats only). Optuna never judges such a trial stale: a driver cut off between
    claiming it and its first heartbeat (an outage, a kill) would leave it RUNNING forever."""
    import sqlalchemy as sa

    query = sa.text(
        "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
        " WHERE t.study_id = :s AND t.state = 'RUNNING' AND h.trial_id IS NULL"
    )
    with engine_of(study).connect() as conn:
        return [tid for (tid,) in conn.execute(query, {"s": study_id(study)})]


def all_trials(
    study: optuna.Study, intermediate_values: bool = True
) -> list[optuna.trial.FrozenTrial]:
    """``study.get_trials(deepcopy=False)``, read in bulk: the same trials, in the same order.

    On an RDB storage Optuna builds an ORM object per row and parses each param's distribution
    anew (3 s for 10,000 trials); here one plain query per table, each distinct distribution
    parsed once. ``intermediate_values=False`` leaves them out (empty), for readers that do not
    use them: a study reporting 100 epochs a trial holds a million. Other storages: Optuna's.
    """
    from optuna.storages import RDBStorage

    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        return study.get_trials(deepcopy=False)
    from optuna.storages._rdb import models

    # Optuna 5 stores UTC and gives local time, as its model's properties do; 4 stores local time
    when = _local_time if hasattr(models.TrialModel, "_datetime_start_utc") else lambda d: d
    trials, rows = _trial_rows(backend, study_id(study), intermediate_values)
    return _frozen_trials(trials, rows, when)


def _trial_rows(backend: Any, sid: int, intermediate_values: bool) -> tuple[list[Any], Rows]:
    """The rows of study ``sid``'s trials, one plain query per table: the trials (id, number,
    state, start, completion; by id), and per other table (``params``, ``values``, ``user``,
    ``system``, ``steps``: empty unless ``intermediate_values``) its rows by trial id."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    T = models.TrialModel
    in_study = sa.select(T.trial_id).where(T.study_id == sid)

    def grouped(table: Any, columns: str) -> dict[int, list[tuple]]:
        """The rows of a table of the study's trials by trial id, each sorted by its first
        column (as Optuna sorts them), without the id."""
        cols = [table.__table__.c[c] for c in ("trial_id", *columns.split())]
        out: dict[int, list[tuple]] = {}
        query = sa.select(*cols).where(cols[0].in_(in_study)).order_by(*cols[:2])
        for tid, *rest in session.execute(query):
            out.setdefault(tid, []).append(tuple(rest))
        return out

    with _create_scoped_session(backend.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(sid, session)
        c = T.__table__.c
        trials = session.execute(
            sa.select(c.trial_id, c.number, c.state, c.datetime_start, c.datetime_complete)
            .where(c.study_id == sid)
            .order_by(c.trial_id)
        ).all()
        rows: Rows = {
            "params": grouped(
                models.TrialParamModel, "param_id param_name param_value distribution_json"
            ),
            "values": grouped(models.TrialValueModel, "objective value value_type"),
            "user": grouped(
                models.TrialUserAttributeModel, "trial_user_attribute_id key value_json"
            ),
            "system": grouped(
                models.TrialSystemAttributeModel, "trial_system_attribute_id key value_json"
            ),
            "steps": {},
        }
        if intermediate_values:
            rows["steps"] = grouped(
                models.TrialIntermediateValueModel,
                "step intermediate_value intermediate_value_type",
            )
    return list(trials), rows


def _frozen_trials(
    trials: list[Any], rows: Rows, when: Callable[[Any], Any]
) -> list[optuna.trial.FrozenTrial]:
    """The trials (:func:`_trial_rows`) as Optuna gives them, each distinct distribution parsed
    once; ``when``: a stored time as Optuna gives it."""
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models
    from optuna.trial import FrozenTrial

    params, values, user, system, steps = (
        rows[k] for k in ("params", "values", "user", "system", "steps")
    )
    parsed: dict[str, Any] = {}  # distribution JSON -> distribution: a grid has few

    def distribution(text: str) -> Any:
        if text not in parsed:
            parsed[text] = json_to_distribution(text)
        return parsed[text]

    out = []
    for tid, number, state, start, complete in trials:
        ps = [(name, v, distribution(d)) for _, name, v, d in params.get(tid, ())]
        vs = values.get(tid)
        to_value = models.TrialValueModel.stored_repr_to_value
        to_step = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        out.append(
            FrozenTrial(
                number=number,
                state=state,
                value=None,
                values=[to_value(v, kind) for _, v, kind in vs] if vs else None,
                datetime_start=when(start),
                datetime_complete=when(complete),
                params={name: d.to_external_repr(v) for name, v, d in ps},
                distributions={name: d for name, _, d in ps},
                user_attrs={k: json.loads(v) for _, k, v in user.get(tid, ())},
                system_attrs={k: json.loads(v) for _, k, v in system.get(tid, ())},
                intermediate_values={s: to_step(v, kind) for s, v, kind in steps.get(tid, ())},
                trial_id=tid,
            )
        )
    return out


def _local_time(utc: datetime.datetime | None) -> datetime.datetime | None:
    """A naive UTC time stored by Optuna 5 as the naive local time its trials hold."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)
