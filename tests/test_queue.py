"""The queue of a study's trials in Optuna's storage, without any trial process."""

from __future__ import annotations

import optuna
import pytest

from bopsweep.driver.queue import TrialQueue
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.studies import TrialConfig, expand, grid_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
BASE = TrialConfig(epochs=2, unbiased=True)


@pytest.fixture
def queue(storage) -> TrialQueue:
    """The queue of a bopsweep study (its base configuration stored in the study), in SQLite
    and in PostgreSQL."""
    store = Store(storage, create=True)
    study, _ = store.create(grid_study("g", BASE, {"gamma": [1e-7]}))
    return TrialQueue(study)


def planned(values: str = "1e-7,1e-6,1e-5"):
    axis = [float(v) for v in values.split(",")]
    return expand(grid_study("g", BASE, {"gamma": axis}))


def states(queue: TrialQueue) -> list[str]:
    return [t.state.name for t in queue.trials()]


def test_only_missing_configurations_are_queued(queue):
    assert queue.enqueue_missing(planned()) == 3
    assert queue.enqueue_missing(planned()) == 0
    assert queue.enqueue_missing(planned("1e-7,1e-4")) == 1
    assert states(queue) == ["WAITING"] * 4


def test_claim_takes_the_first_waiting_trial_once(queue):
    queue.enqueue_missing(planned())
    first, second = queue.claim(), queue.claim()
    assert (first.number, second.number) == (0, 1)
    assert states(queue) == ["RUNNING", "RUNNING", "WAITING"]
    queue.claim()
    assert queue.claim() is None


def test_a_trial_queued_by_another_tool_is_failed_not_run(queue):
    queue.study.enqueue_trial({"gamma": 1e-7})
    queue.enqueue_missing(planned("1e-6"))
    claimed = queue.claim()
    assert claimed.number == 1
    foreign = queue.trials()[0]
    assert foreign.state.name == "FAIL"
    assert foreign.user_attrs["fail_reason"].startswith("queued without a bopsweep configuration")


def test_a_failed_trial_is_requeued_as_a_new_trial_with_its_configuration(queue):
    queue.enqueue_missing(planned("1e-7"))
    t = queue.claim()
    queue.fail(t, "crash", "killed by SIGKILL", requeue=1)
    failed, retry = queue.trials()
    assert failed.state.name == "FAIL" and failed.user_attrs["requeued"] is True
    assert retry.state.name == "WAITING" and retry.user_attrs["attempt"] == 1
    assert retry.user_attrs["config_id"] == failed.user_attrs["config_id"]
    assert retry.params == failed.params and retry.distributions == failed.distributions
    assert queue.counted() == 1  # one configuration, however many attempts


def lose_the_retry(queue: TrialQueue, failure: str) -> None:
    """What a driver killed between ending a trial and queueing its retry leaves: the trial
    FAILed and marked re-queued (in the order every ending writes them), no retry."""
    t = queue.claim()
    queue.set_attrs(trial_id(t), {"failure": failure, "fail_reason": "x", "requeued": True})
    queue.tell(t, "FAIL")


@pytest.mark.parametrize(("failure", "attempt"), [("crash", 1), ("interrupted", 0)])
def test_a_retry_a_stopped_driver_never_queued_is_queued_at_the_next_start(queue, failure, attempt):
    queue.enqueue_missing(planned("1e-7,1e-6"))
    lose_the_retry(queue, failure)
    assert queue.requeue_lost() == 1
    lost, other, retry = queue.trials()
    assert retry.state.name == "WAITING" and retry.user_attrs["attempt"] == attempt
    assert retry.user_attrs["config_id"] == lost.user_attrs["config_id"]
    assert retry.params == lost.params and other.state.name == "WAITING"
    assert queue.requeue_lost() == 0  # queued once, however often the driver starts


def test_a_configuration_out_of_retries_or_held_is_not_queued_again(queue):
    queue.enqueue_missing(planned("1e-7"))
    t = queue.claim()
    queue.fail(t, "crash", "killed", requeue=1)  # its retry is queued: held
    assert queue.requeue_lost() == 0
    queue.fail(queue.claim(), "crash", "killed", requeue=None)  # its last retry failed for good
    assert queue.requeue_lost() == 0
    assert states(queue) == ["FAIL", "FAIL"]


def test_tell_finishes_a_trial_once(queue):
    queue.enqueue_missing(planned("1e-7"))
    t = queue.claim()
    assert queue.tell(t, "COMPLETE", 0.5)
    assert not queue.tell(t, "FAIL")  # already finished: an earlier write, or another driver
    assert queue.trials()[0].value == 0.5 and queue.all_configs_complete()


def test_stale_running_trials_are_recovered(queue):
    queue.enqueue_missing(planned("1e-7,1e-6"))
    queue.claim()
    assert queue.recover_stale() == 1
    assert states(queue) == ["FAIL", "WAITING", "WAITING"]
    assert queue.trials()[0].user_attrs["failure"] == "interrupted"


def test_a_sampled_trial_whose_configuration_fails_is_not_left_running(queue):
    def configure(trial):
        trial.suggest_float("gamma", 1e-9, 1e-5, log=True)
        raise ValueError("no such space")

    with pytest.raises(ValueError):
        queue.ask(configure)
    (t,) = queue.trials()
    assert t.state.name == "FAIL" and "never configured" in t.user_attrs["fail_reason"]
    assert queue.counted() == 0  # a trial that was never configured does not count


def test_a_sampled_trial_gets_its_configuration(queue):
    attrs = {"config_id": "abc", "label": "x", "config": {"epochs": 1}, "attempt": 0}
    t = queue.ask(lambda trial: attrs)
    assert t.state.name == "RUNNING" and t.user_attrs == attrs and queue.counted() == 1


def test_a_grid_queued_at_once_reads_back_as_trials_queued_one_by_one(queue, tmp_path):
    """enqueue_missing writes Optuna's rows in one transaction; every field Optuna reads back
    equals that of the same trials added with study.add_trial, numbers included."""
    plan = planned("1e-9,1e-8,1e-7,1e-6,1e-5")
    queue.study.enqueue_trial({"gamma": 1e-7})  # numbers continue after a trial already there
    assert queue.enqueue_missing(plan) == 5
    other = TrialQueue(Store(f"sqlite:///{tmp_path / 'o.db'}", create=True).create(
        grid_study("g", BASE, {"gamma": [1e-7]}))[0])  # fmt: skip
    other.study.enqueue_trial({"gamma": 1e-7})
    for p in plan:
        other.enqueue(p.params, p.config_id, p.label, p.config.to_dict(), 0, p.distributions)

    def fields(q: TrialQueue) -> list[tuple]:
        return [
            (t.number, t.state, t.params, t.distributions, t.user_attrs, t.system_attrs)
            for t in q.trials()
        ]

    assert fields(queue) == fields(other)
    assert [t.number for t in queue.trials()] == list(range(6))


def test_claim_goes_by_number_and_skips_trials_claimed_elsewhere(queue):
    queue.enqueue_missing(planned())
    elsewhere = TrialQueue(queue.study)  # another driver of the same study
    assert elsewhere.claim().number == 0
    assert queue.claim().number == 1
    assert queue.claim().number == 2
    assert queue.claim() is None


def test_a_trials_attributes_are_set_in_one_commit_and_never_on_a_finished_trial(queue):
    import sqlalchemy as sa

    from bopsweep.store.optuna_adapter import engine_of

    queue.enqueue_missing(planned("1e-7"))
    t = queue.claim()
    commits: list[object] = []

    def committed(conn):
        commits.append(conn)

    engine = engine_of(queue.study)
    sa.event.listen(engine, "commit", committed)
    try:
        queue.set_attrs(trial_id(t), {"a": 1, "b": [2], "c": "x"})
    finally:
        sa.event.remove(engine, "commit", committed)
    assert len(commits) == 1  # Optuna's storage alone: one commit per key
    assert {k: queue.trial(trial_id(t)).user_attrs[k] for k in "abc"} == {
        "a": 1,
        "b": [2],
        "c": "x",
    }
    queue.tell(t, "COMPLETE", 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        queue.set_attrs(trial_id(t), {"d": 3, "e": 4})
    assert not {"d", "e"} & set(queue.trial(trial_id(t)).user_attrs)
