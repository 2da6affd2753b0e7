"""The live study display's overall progress: trials and epochs done, elapsed time and ETA.

Times are passed in (a clock the test sets), so every estimate is exact and nothing sleeps."""

from __future__ import annotations

import optuna
import pytest
from rich.console import Console

from bopsweep.cli.display import StudyDisplay
from bopsweep.driver import make_slots
from bopsweep.driver.eta import EpochClock, duration
from bopsweep.driver.state import Running, Snapshot, StudyProgress, TrialView, study_progress

TrialState = optuna.trial.TrialState


# --- the ETA -------------------------------------------------------------------------------------
def test_eta_is_unknown_until_an_epoch_is_measured():
    clock = EpochClock(started=100.0)
    assert clock.seconds_per_epoch() is None
    assert clock.eta(remaining=10, now=500.0) is None
    assert duration(clock.eta(10, 500.0)) == "—"


def test_eta_is_the_remaining_epochs_at_the_pace_measured_in_this_run():
    clock = EpochClock(started=0.0)
    for t in (10.0, 20.0, 30.0):  # three epochs, one every 10 s
        clock.epoch(t)
    assert clock.seconds_per_epoch() == 10.0
    assert clock.eta(remaining=7, now=30.0) == 70.0
    assert clock.eta(remaining=7, now=34.0) == 66.0  # counts down between epochs
    assert clock.eta(remaining=7, now=300.0) == 60.0  # a stall: it stops after one epoch's time
    assert clock.eta(remaining=0, now=300.0) == 0.0


def test_epochs_of_parallel_trials_shorten_the_pace():
    clock = EpochClock(started=0.0)
    for t in (20.0, 20.5, 40.0, 40.5):  # two trials side by side, 20 s an epoch each
        clock.epoch(t)
    assert clock.seconds_per_epoch() == pytest.approx(40.5 / 4)


def test_durations_read_as_hours_minutes_seconds():
    assert duration(0) == "0:00:00"
    assert duration(3725.4) == "1:02:05"
    assert duration(2 * 86400 + 5) == "2d 00:00:05"
    assert duration(-3) == "0:00:00"
    assert duration(None) == "—"


# --- the study's progress from its trials --------------------------------------------------------
BASE = {"epochs": 5}  # the study's base configuration, as far as progress reads it


def trial(config_id: str, state: TrialState, reported: int, epochs: int = 5, **attrs):
    """A trial as the driver leaves it: its configuration (its difference from :data:`BASE`),
    and ``reported`` epochs of curve."""
    delta = {} if epochs == BASE["epochs"] else {"epochs": epochs}
    return optuna.trial.create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        intermediate_values={e: 0.1 * e for e in range(1, reported + 1)},
        user_attrs={"config_id": config_id, "config_delta": delta, **attrs},
    )


def running(config_id: str, epochs_done: int) -> Running:
    r = Running(0, 0, config_id, config_id, {}, make_slots("cpu")[0], 0, 5)
    r.epochs_done = epochs_done
    return r


def test_study_progress_counts_finished_configurations_and_their_epochs():
    trials = [
        trial("complete", TrialState.COMPLETE, 5, epochs_done=5),
        trial("pruned", TrialState.PRUNED, 2, epochs_done=2),  # finished at 2 of 5
        trial("diverged", TrialState.FAIL, 1, epochs_done=1, failure="diverged"),
        trial("retried", TrialState.FAIL, 3, epochs_done=3, failure="crash", requeued=True),
        trial("retried", TrialState.WAITING, 0),  # continues from epoch 3
        trial("out-of-retries", TrialState.FAIL, 4, epochs_done=4, failure="crash"),
        trial("running", TrialState.RUNNING, 2),  # this driver has seen 4 epochs, 2 written
        trial("queued", TrialState.WAITING, 0),
        optuna.trial.create_trial(state=TrialState.FAIL),  # never configured: not a trial
    ]
    progress = study_progress(trials, BASE, [running("running", 4)])
    # finished: complete, pruned, diverged, out of retries; not: retried, running, queued
    assert progress == StudyProgress(
        trials_done=4,
        trials_total=7,
        epochs_done=5 + 2 + 1 + 3 + 4 + 4 + 0,
        epochs_total=5 + 2 + 1 + 5 + 4 + 5 + 5,
    )


def test_a_search_counts_the_trials_its_sampler_has_yet_to_make():
    trials = [trial("a", TrialState.COMPLETE, 5, epochs_done=5), trial("b", TrialState.RUNNING, 1)]
    progress = study_progress(trials, BASE, search=(10, 5))
    assert progress == StudyProgress(1, 10, 6, 50)


def test_epochs_to_go_come_from_a_trials_own_setting_or_the_studys_base():
    old_style = optuna.trial.create_trial(  # bopsweep 0.1.0 stored the whole configuration
        state=TrialState.WAITING, user_attrs={"config_id": "old", "config": {"epochs": 9}}
    )
    trials = [
        trial("longer", TrialState.WAITING, 0, epochs=8),
        trial("base", TrialState.WAITING, 0),
    ]
    assert study_progress([*trials, old_style], BASE).epochs_total == 8 + 5 + 9


# --- what the display shows ----------------------------------------------------------------------
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def view(number: int = 3, epochs_done: int = 2) -> TrialView:
    return TrialView(
        number, "γ=1e-07", "cpu0", 5, epochs_done, 0, 0.4321, -3.0, {"epoch": 3, "step": 7},
        None, None,
    )  # fmt: skip


def snapshot(progress: StudyProgress | None, running: list[TrialView] | None = None) -> Snapshot:
    return Snapshot(1, 0, None, 2, running if running is not None else [view()], progress)


def test_the_live_display_shows_the_studys_progress_and_eta():
    console = Console(record=True, width=140, force_terminal=True)
    clock = Clock(100.0)
    display = StudyDisplay("grid-gamma", quiet=False, console=console, clock=clock)
    with display:
        display.update(snapshot(StudyProgress(1, 4, 8, 20)))
        assert "1/4 trials · 8/20 epochs · elapsed 0:00:00 · ETA —" in display.overall()
        clock.now = 130.0
        display.event("epoch", view())  # one epoch measured, 30 s after the start
        clock.now = 140.0
        display.update(snapshot(StudyProgress(1, 4, 9, 20)))
    shown = console.export_text()
    # 11 epochs left at 30 s an epoch, 10 s into the next one
    assert "1/4 trials · 9/20 epochs · elapsed 0:00:40 · ETA 0:05:20" in shown
    assert "study grid-gamma: 1 done · 1 running · 2 queued · 0 failed" in shown
    assert "γ=1e-07" in shown  # the running trials' table is still there


def test_epochs_restored_on_resume_are_done_but_not_measured():
    console = Console(record=True, width=140)
    clock = Clock(0.0)
    display = StudyDisplay("s", quiet=False, console=console, clock=clock)
    with display:
        clock.now = 60.0  # a resumed trial reports its 40 restored epochs: no epoch event
        display.update(snapshot(StudyProgress(0, 1, 40, 50), [view(epochs_done=40)]))
    assert "0/1 trials · 40/50 epochs · elapsed 0:01:00 · ETA —" in console.export_text()


def test_plain_lines_give_the_studys_progress_with_each_trials_end(capsys):
    clock = Clock(0.0)
    with StudyDisplay("s", quiet=True, clock=clock) as display:
        display.event("start", view())
        for t in (10.0, 20.0):
            clock.now = t
            display.event("epoch", view())
        display.update(snapshot(StudyProgress(1, 3, 2, 6)))  # as the driver does at an end
        display.event("complete", view())
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "trial 3 [γ=1e-07] on cpu0: started"  # no progress on other lines
    assert "study:" not in "".join(lines[1:3])
    assert lines[3] == (
        "trial 3 [γ=1e-07] on cpu0: COMPLETE val_acc 0.4321; "
        "study: 1/3 trials · 2/6 epochs · elapsed 0:00:20 · ETA 0:00:40"
    )
