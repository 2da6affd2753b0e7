"""Ctrl-C is never lost, even when it lands where Python cannot raise it."""

from __future__ import annotations

import os
import signal

from bopsweep.driver import Driver, make_slots
from bopsweep.store import Store
from bopsweep.studies import TrialConfig, expand, grid_study
from tests.helpers import TINY_SETTINGS, zygotes


class Finalizer:
    """An object whose finalizer gets the KeyboardInterrupt: Python reports it to
    ``sys.unraisablehook`` and carries on, as when Ctrl-C lands in a weakref callback."""

    def __del__(self) -> None:
        raise KeyboardInterrupt


class SwallowsCtrlC:
    """The driver's display, whose epoch event runs a finalizer that gets Ctrl-C."""

    def event(self, kind: str, trial: object, detail: str = "") -> None:
        if kind == "epoch":
            Finalizer()  # made and dropped: its __del__ runs here

    def note(self, text: str) -> None:
        pass

    def wants_update(self) -> bool:
        return False


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_study(small_cifar_dir, tmp_path, capsys):
    base = TrialConfig(epochs=50, **TINY_SETTINGS)
    spec = grid_study("s", base, {"gamma": [1e-7]})
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study, _ = store.create(spec)
    local = {"data_dir": str(small_cifar_dir), "download": False}
    driver = Driver(
        store, study, make_slots("cpu"), tmp_path / "ckpt", local, display=SwallowsCtrlC()
    )
    driver.queue.enqueue_missing(expand(spec))

    assert driver.run() == 130
    interrupted, requeued = study.get_trials()
    assert interrupted.user_attrs["failure"] == "interrupted"
    assert interrupted.user_attrs["epochs_done"] < base.epochs
    assert requeued.state.name == "WAITING"
    assert "Exception ignored" not in capsys.readouterr().err
    # the process as it was: Ctrl-C is not left ignored (children would inherit that)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not zygotes(os.getpid()), "a warm-start zygote outlived the run"
