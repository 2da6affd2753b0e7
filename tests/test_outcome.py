"""How a trial ended, from its exit code and last message: the driver's rules, without processes."""

from __future__ import annotations

import signal

import pytest

from bopsweep.driver.outcome import cannot_be_written, crash_reason, describe, judge, unstarted
from bopsweep.driver.process import Slot
from bopsweep.driver.protocol import EXIT_DIVERGED, EXIT_USER_ERROR, decode, encode
from bopsweep.driver.state import Running

DONE = {"type": "done", "summary": {"final_val_acc": 0.8, "best_val_acc": 0.85, "best_epoch": 3}}


def test_a_trial_that_says_done_and_exits_0_is_complete_with_its_final_accuracy():
    ending = judge(0, DONE, None, [], attempt=0, max_retries=2)
    assert (ending.state, ending.value, ending.event) == ("COMPLETE", 0.8, "complete")
    assert ending.attrs == {"best_val_acc": 0.85, "best_epoch": 3}


def test_exit_0_without_done_is_a_crash():
    ending = judge(0, None, None, ["boom\n"], attempt=0, max_retries=2)
    assert (ending.state, ending.failure, ending.reason, ending.retry) == (
        "FAIL",
        "crash",
        "boom",
        True,
    )


def test_a_pruned_trial_is_pruned_unless_it_finished_first():
    assert judge(-15, None, 4, [], 0, 2).state == "PRUNED"
    assert judge(-15, None, 4, [], 0, 2).attrs == {"pruned_at_epoch": 4}
    assert judge(0, DONE, 4, [], 0, 2).state == "COMPLETE"


@pytest.mark.parametrize("killed", [-signal.SIGTERM, 143])
def test_a_trial_that_said_done_as_the_pruners_stop_reached_it_is_complete(killed):
    """The stop races the ending (a process exiting takes SIGTERM at its default action):
    the training is finished and recorded, so it is neither a crash nor run again."""
    ending = judge(killed, DONE, 4, [], 0, 2)
    assert (ending.state, ending.value, ending.retry) == ("COMPLETE", 0.8, False)
    assert judge(killed, DONE, None, [], 0, 2).state == "FAIL"  # not stopped by the driver


def test_a_trial_is_never_pruned_after_its_last_epoch():
    r = Running(0, 1, "c", "c", {}, Slot("cpu", "cpu", {}, 1), attempt=0, epochs=4)
    r.epochs_done = 3
    assert r.may_be_pruned()
    r.epochs_done = 4  # finished: its process is saying done
    assert not r.may_be_pruned()
    r.epochs_done, r.pruned_at = 2, 2
    assert not r.may_be_pruned()  # pruned already


def test_divergence_and_bad_input_fail_for_good():
    diverged = judge(EXIT_DIVERGED, {"type": "diverged", "reason": "NaN loss"}, None, [], 0, 2)
    assert (diverged.failure, diverged.reason, diverged.retry) == ("diverged", "NaN loss", False)
    error = judge(EXIT_USER_ERROR, {"type": "error", "reason": "no data"}, None, [], 0, 2)
    assert (error.failure, error.reason, error.retry, error.event) == (
        "error",
        "no data",
        False,
        "fail",
    )


@pytest.mark.parametrize(("attempt", "retry"), [(0, True), (1, True), (2, False)])
def test_a_crash_is_retried_while_attempts_remain(attempt, retry):
    ending = judge(-signal.SIGKILL, None, None, [], attempt, max_retries=2)
    assert (ending.failure, ending.reason, ending.retry) == ("crash", "killed by SIGKILL", retry)
    assert ending.attrs["requeued"] is retry and ending.event == ("retry" if retry else "fail")


def test_out_of_memory_is_named_and_retried():
    tail = ["Traceback ...\n", "torch.OutOfMemoryError: CUDA out of memory. Tried ...\n", "\n"]
    ending = judge(1, None, None, tail, 0, 2)
    assert ending.failure == "oom" and ending.retry and "out of memory" in ending.reason


def test_crash_reasons():
    assert crash_reason(-signal.SIGSEGV, []) == "killed by SIGSEGV"
    assert crash_reason(1, []) == "exited with code 1"
    assert crash_reason(1, ["x" * 900]) == "x" * 500


def test_a_trial_that_could_not_start_is_requeued_like_a_crash_and_always_after_ctrl_c():
    assert unstarted(0, 2, interrupted=False) == 1
    assert unstarted(2, 2, interrupted=False) is None
    assert unstarted(2, 2, interrupted=True) == 2


def test_describe_and_database_errors():
    assert describe(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    assert describe(OSError(28, "No space left on device", "/x")) == "No space left on device: /x"
    assert describe(ValueError("bad\nmore")) == "ValueError: bad"
    assert cannot_be_written(OSError("database or disk is full"), "postgresql://h/db")
    assert cannot_be_written(RuntimeError("attempt to write a readonly database"), "sqlite:///a.db")
    assert not cannot_be_written(RuntimeError("database is locked"), "sqlite:///a.db")
    assert not cannot_be_written(RuntimeError("connection refused"), "postgresql://h/db")


def test_the_channel_carries_json_lines_and_ignores_anything_else():
    assert decode(encode({"type": "epoch", "row": {"epoch": 1}})) == {
        "type": "epoch",
        "row": {"epoch": 1},
    }
    assert decode("a stray print\n") is None
    assert decode("[1, 2]\n") is None and decode('{"no": "type"}\n') is None
