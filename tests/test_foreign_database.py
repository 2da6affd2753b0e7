"""A database written by another tool: attributes bopsweep did not write are data to check, and
a bad one is one line naming the trial or the study, never a traceback nor a stopped study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from bopsweep.driver.queue import TrialQueue
from bopsweep.store import SPEC_ATTR, Store
from bopsweep.studies import TrialConfig, expand, grid_study
from tests.helpers import bopsweep, invoke, one_line_error

BAD_DELTAS = ["not json{", [1, 2], {"gamma": "high"}]


def queued(db: Path, values: list[float]) -> list[int]:
    """A grid over tau queued in ``db``; its trials' ids."""
    spec = grid_study("s", TrialConfig(epochs=1, width=0.0625, batch_size=50), {"tau": values})
    store = Store(f"sqlite:///{db}", create=True)
    study, _ = store.create(spec)
    TrialQueue(study).enqueue_missing(expand(spec))
    ids = [t._trial_id for t in study.get_trials()]
    store.engine.dispose()
    return ids


def test_trials_whose_stored_configuration_is_unreadable_fail_alone(small_cifar_dir, tmp_path):
    db = tmp_path / "study.db"
    ids = queued(db, [1e-6, 1e-5, 1e-4, 1e-3])
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    for tid, delta in zip(ids, BAD_DELTAS):  # the last trial stays as bopsweep queued it
        storage.set_trial_user_attr(tid, "config_delta", delta)
    storage.engine.dispose()

    result = bopsweep("resume", "study.db", "--data-dir", str(small_cifar_dir), "--quiet",
                      "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr  # those configurations have no result
    assert "Traceback" not in result.stderr
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    for t in trials[:3]:  # failed once each, never re-queued: no retry could read them
        assert f"configuration {t.user_attrs['config_id']}" in t.user_attrs["fail_reason"]
        assert t.user_attrs["requeued"] is False


@pytest.mark.parametrize("spec", [{"name": "s"}, {"base": "x"}, "a string", {"base": {}}])
def test_a_study_definition_without_its_base_is_one_line(tmp_path, spec):
    db = tmp_path / "study.db"
    queued(db, [1e-6])
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    storage.set_study_user_attr(storage.get_study_id_from_name("s"), SPEC_ATTR, spec)
    storage.engine.dispose()
    one_line_error(invoke(["resume", str(db)]), "bopsweep_spec")
    for command in (["status"], ["table"], ["export", "-o", str(tmp_path / "t.csv")], ["plot"]):
        result = invoke([*command, str(db), *(["--out", str(tmp_path)] * (command == ["plot"]))])
        if result.exit_code != 0:  # what needs no base reads on; the rest is one line
            one_line_error(result, "")
