"""``status --format json`` and ``studies --format json``: documents a program reads, floats as
stored, NaN as null."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import FloatDistribution

from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.studies import TrialConfig, grid_study
from tests.helpers import invoke

GAMMA = 7.246e-10
ACC = 0.8123456789012345


def make_study(path: Path) -> None:
    """A study: one complete trial (γ 7.246e-10, C2I rows), one failed with a NaN attribute."""
    store = Store(f"sqlite:///{path}", create=True)
    study, _ = store.create(grid_study("g", TrialConfig(), {"gamma": [GAMMA, 1e-7]}))
    dist = {"gamma": FloatDistribution(GAMMA, GAMMA)}
    study.add_trial(
        optuna.trial.create_trial(
            params={"gamma": GAMMA}, distributions=dist, value=ACC,
            user_attrs={"config_id": "c0", "label": "gamma=7.246e-10", "best_val_acc": 0.9,
                        "best_epoch": 2, "epochs_done": 2},
        )
    )  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, params={"gamma": GAMMA}, distributions=dist,
            user_attrs={"config_id": "c1", "label": "x", "failure": "diverged",
                        "fail_reason": "NaN loss", "best_val_acc": float("nan")},
        )
    )  # fmt: skip
    first = study.get_trials(deepcopy=False)[0]
    rows = [{"epoch": e, "val_acc": 0.5, "c2i": 0.1 + e / 3} for e in (1, 2)]
    store.metrics.write(study_id(study), trial_id(first), rows, {})
    store.engine.dispose()


def test_status_json_holds_every_trial_with_the_stored_floats(tmp_path):
    make_study(tmp_path / "study.db")
    result = invoke(["status", str(tmp_path / "study.db"), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["study"] == "g" and doc["kind"] == "grid"
    assert doc["counts"] == {"COMPLETE": 1, "RUNNING": 0, "WAITING": 0, "PRUNED": 0, "FAIL": 1}
    assert doc["best_trial"] == 0
    done, failed = doc["trials"]
    assert done["params"] == {"gamma": GAMMA} and done["params"]["gamma"] == 7.246e-10
    assert done["value"] == ACC  # not rounded, under Optuna's name (as export writes it)
    stored = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'study.db'}")
    start, complete = stored.trials[0].datetime_start, stored.trials[0].datetime_complete
    assert datetime.fromisoformat(done["datetime_start"]) == start  # ISO 8601
    assert datetime.fromisoformat(done["datetime_complete"]) == complete
    assert pd.Timedelta(done["duration"]) == complete - start
    assert done["last_c2i"] == 0.1 + 2 / 3
    assert (done["label"], done["config_id"], done["epochs_done"]) == ("gamma=7.246e-10", "c0", 2)
    assert failed["state"] == "FAIL" and failed["failure"] == "diverged"
    assert failed["fail_reason"] == "NaN loss"
    assert failed["best_val_acc"] is None and failed["value"] is None  # NaN → null
    assert ": NaN" not in result.output
    assert done["provenance"] is None  # made by another tool: it records none


def test_studies_json_has_one_object_per_study(tmp_path):
    make_study(tmp_path / "study.db")
    result = invoke(["studies", str(tmp_path / "study.db"), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    [study] = doc["studies"]
    assert study["study"] == "g" and study["kind"] == "grid"
    assert study["counts"]["COMPLETE"] == 1 and study["counts"]["FAIL"] == 1


def test_the_table_and_the_json_come_from_the_same_records(tmp_path):
    make_study(tmp_path / "study.db")
    table = invoke(["status", str(tmp_path / "study.db")], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "1 complete, 1 fail" in table.output and "FAIL (diverged)" in table.output
    assert "0.8123" in table.output and "best: trial 0" in table.output
    listing = invoke(["studies", str(tmp_path / "study.db")])
    assert listing.exit_code == 0 and "grid" in listing.output
    bad = invoke(["status", str(tmp_path / "study.db"), "--format", "yaml"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_the_table_shows_the_first_trials_and_all_with_all_while_the_json_has_every_one(
    tmp_path,
):
    from bopsweep.cli.inspect import STATUS_ROWS
    from bopsweep.store.optuna_adapter import add_waiting_trials

    path = tmp_path / "study.db"
    store = Store(f"sqlite:///{path}", create=True)
    study, _ = store.create(grid_study("g", TrialConfig(), {"gamma": [GAMMA]}))
    n = STATUS_ROWS + 3
    add_waiting_trials(
        study,
        [
            optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING,
                                      user_attrs={"label": f"cfg{k}"})
            for k in range(n)
        ],
    )  # fmt: skip
    store.engine.dispose()

    def labels(output: str) -> set[str]:
        return {w for w in output.split() if w.startswith("cfg")}

    short = invoke(["status", str(path)], terminal_width=200)
    assert short.exit_code == 0, short.output
    assert labels(short.output) == {f"cfg{k}" for k in range(STATUS_ROWS)}
    assert f"{n} waiting" in short.output
    assert "… 3 more trials; --all shows every one" in short.output
    full = invoke(["status", str(path), "--all"], terminal_width=200)
    assert full.exit_code == 0, full.output
    assert labels(full.output) == {f"cfg{k}" for k in range(n)} and "more trials" not in full.output
    doc = json.loads(invoke(["status", str(path), "--format", "json"]).output)
    assert len(doc["trials"]) == n
