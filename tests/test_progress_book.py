"""The study's progress as a driver keeps it (ProgressBook): after every change a driver or
another one makes, it equals the full count of every trial (study_progress, the definition),
in SQLite and in PostgreSQL, and it reads only what changed."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa

from bopsweep.driver import progress
from bopsweep.driver.progress import ProgressBook
from bopsweep.driver.queue import TrialQueue
from bopsweep.driver.state import study_progress
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.store.sql import STATE_INDEX, ensure_state_index
from bopsweep.studies import TrialConfig, expand, grid_study
from tests.helpers import wait_until

optuna.logging.set_verbosity(optuna.logging.WARNING)
BASE = TrialConfig(epochs=3, unbiased=True)


def planned(gammas: list[float]):
    return expand(grid_study("g", BASE, {"gamma": gammas}))


class Study:
    """A grid study and the calls a driver makes on it (no trial process)."""

    def __init__(self, url: str) -> None:
        self.url, self.store = url, Store(url, create=True)
        study, _ = self.store.create(grid_study("g", BASE, {"gamma": [1e-7]}))
        self.queue = TrialQueue(study)
        self.sid = study_id(study)

    def epochs(self, tid: int, *epochs: int) -> None:
        rows = [{"epoch": e, "val_acc": 0.1 * e} for e in epochs]
        self.store.metrics.write(self.sid, tid, rows, {}, curve={e: 0.1 * e for e in epochs})

    def fresh(self) -> TrialQueue:
        """The study's queue read afresh (no cache of this process)."""
        return TrialQueue(optuna.load_study(study_name="g", storage=Store(self.url).storage))

    def full_count(self):
        """Counted from every trial."""
        fresh = self.fresh()
        return study_progress(fresh.trials(), fresh.base)


@pytest.fixture
def study(storage) -> Study:
    return Study(storage)


def book_of(study: Study) -> ProgressBook:
    return ProgressBook(TrialQueue(study.queue.study), study.store.metrics.epochs)


def agrees(book: ProgressBook, study: Study) -> bool:
    book.poll()
    waiting = len(study.fresh().trials("WAITING"))
    return book.progress() == study.full_count() and book.waiting == waiting


def test_the_kept_progress_equals_the_full_count_through_a_studys_life(study):
    book = book_of(study)  # another driver's view, made before anything is queued
    assert agrees(book, study)
    study.queue.enqueue_missing(planned([1e-7, 1e-6, 1e-5]))
    assert agrees(book, study)
    a, b = study.queue.claim(), study.queue.claim()
    study.epochs(trial_id(a), 1, 2)
    assert agrees(book, study)  # running: epochs reached of those planned
    study.epochs(trial_id(a), 3)
    study.queue.tell(a, "COMPLETE", 0.3)
    assert agrees(book, study) and book.progress().trials_done == 1
    study.epochs(trial_id(b), 1)  # b crashes after an epoch: its retry continues it
    study.queue.fail(b, "crash", "boom", requeue=1)
    assert agrees(book, study)
    c, retry = study.queue.claim(), study.queue.claim()  # the retry is queued last
    assert retry.user_attrs["config_id"] == b.user_attrs["config_id"]
    study.epochs(trial_id(retry), 1, 2)  # the restored epoch reported again, then one more
    assert agrees(book, study) and book.progress().epochs_done == 3 + 2
    study.queue.tell(retry, "PRUNED")  # a pruned configuration needs no more epochs
    study.queue.fail(c, "diverged", "NaN", requeue=None)  # failed for good, no epoch
    assert agrees(book, study)
    assert book.progress() == progress.StudyProgress(3, 3, 5, 5)
    study.queue.enqueue_missing(planned([1e-7, 1e-4]))  # the study grows
    assert agrees(book, study) and book.progress().trials_total == 4


def test_a_book_made_on_a_study_under_way_starts_from_the_full_count(study):
    study.queue.enqueue_missing(planned([1e-7, 1e-6, 1e-5, 1e-4]))
    a = study.queue.claim()
    study.epochs(trial_id(a), 1, 2, 3)
    study.queue.tell(a, "COMPLETE", 0.3)
    b = study.queue.claim()
    study.epochs(trial_id(b), 1)
    assert agrees(book_of(study), study)


def test_a_search_trial_is_counted_once_it_is_configured(study):
    """The sampler makes a trial RUNNING before the driver gives it its configuration; a
    trial another tool queued without one is never counted."""
    book = book_of(study)
    study.queue.study.enqueue_trial({"gamma": 1e-7})  # another tool's
    assert agrees(book, study)
    (p,) = planned([1e-3])

    def configure(trial):
        assert agrees(book, study)  # made, not yet configured: not a configuration yet
        return study.queue.waiting(p.params, p.config_id, p.label, p.config.to_dict(), 0).user_attrs

    t = study.queue.ask(configure)
    assert agrees(book, study) and book.progress().trials_total == 1
    study.epochs(trial_id(t), 1)
    study.queue.tell(t, "PRUNED")
    assert agrees(book, study)


def test_local_epochs_not_yet_written_count(study):
    """This driver's running trial's latest epoch shows before its rows are written."""
    from bopsweep.driver.process import Slot
    from bopsweep.driver.state import Running

    study.queue.enqueue_missing(planned([1e-7]))
    t = study.queue.claim()
    book = book_of(study)
    book.poll()
    cid = t.user_attrs["config_id"]
    r = Running(t.number, trial_id(t), cid, "", {}, Slot("cpu", "cpu", {}, 1), 0, epochs=3)
    r.epochs_done = 2
    assert book.progress([r]).epochs_done == 2 and book.progress().epochs_done == 0


def test_a_recount_in_the_background_sets_right_what_no_cursor_sees(study, monkeypatch):
    study.queue.enqueue_missing(planned([1e-7, 1e-6]))
    book = book_of(study)
    assert agrees(book, study)
    with study.store.engine.begin() as conn:  # another tool deletes a trial and its rows
        tid = trial_id(study.queue.trials()[1])
        for table in ("trial_user_attributes", "trial_system_attributes", "trial_params", "trials"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE trial_id = :t"), {"t": tid})
    book.poll()
    assert book.progress() != study.full_count()  # no cursor sees a deletion
    monkeypatch.setattr(progress, "RECOUNT_SECONDS", 0.0)
    book.poll()  # starts the recount, in a thread
    wait_until(lambda: book._recount is None, timeout=30)
    monkeypatch.setattr(progress, "RECOUNT_SECONDS", 3600.0)
    assert book._fresh is not None  # counted afresh, swapped in at the next poll
    assert agrees(book, study)


def test_reading_what_changed_uses_the_primary_keys_and_the_state_index(study):
    """SQLite's plans of the book's reads past the first: each reads from a cursor on, none
    scans the study's trials or rows."""
    if study.store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's query plans")
    ensure_state_index(study.store.engine)
    ensure_state_index(study.store.engine)  # made once; a second call finds it
    study.queue.enqueue_missing(planned([1e-7, 1e-6]))
    book = book_of(study)
    book.poll()
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.extend(str(row[-1]) for row in rows.fetchall())

    sa.event.listen(study.store.engine, "before_cursor_execute", explain)
    try:
        book.poll()
    finally:
        sa.event.remove(study.store.engine, "before_cursor_execute", explain)
    reads = [p for p in plans if p.startswith(("SEARCH", "SCAN"))]
    assert len(reads) == 3 and any(STATE_INDEX in p for p in reads)
    for read in reads:  # each a range from a cursor, or from the oldest unfinished trial
        assert read.startswith("SEARCH") and ("rowid>?" in read or "trial_id>?" in read), read
