"""Studies and run folders written when bopsweep stored C2I's complement (the share of signs
that changed) read back with the paper's C2I (the share kept), and are converted once, whole,
by the first command that writes."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.distributions import FloatDistribution

from bopsweep.attr_keys import C2I_ATTR
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.store.trial_config import config_attrs, study_base
from bopsweep.studies import TrialConfig, grid_study
from bopsweep.trial.run_dir import C2I_KEY, PENDING_METRICS, read_rows
from bopsweep.trial.train import run_trial
from tests.helpers import KEPT, LAYER, as_of_0_1, digest, invoke, old_study


def stored_rows(path: Path) -> list[dict]:
    with sqlite3.connect(path) as conn:
        data = conn.execute("SELECT data FROM bopsweep_epochs ORDER BY epoch").fetchall()
    return [json.loads(d) for (d,) in data]


def test_a_new_study_is_marked_as_holding_the_papers_c2i(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'n.db'}", create=True)
    study, _ = store.create(grid_study("n", TrialConfig(), {"gamma": [1e-7]}))
    assert study.user_attrs[C2I_ATTR] == "kept"


def test_read_only_commands_read_an_old_study_with_the_papers_c2i_and_change_nothing(tmp_path):
    db = tmp_path / "study.db"
    old_study(db)
    before = digest(db)
    status = invoke(["status", str(db), "--format", "json"])
    assert status.exit_code == 0, status.output
    [trial] = json.loads(status.output)["trials"]
    assert trial["last_c2i"] == pytest.approx(KEPT[2])
    exported = invoke(["export", str(db), "--metrics", "-o", "-"])
    assert exported.exit_code == 0, exported.output
    metrics = pd.read_csv(io.StringIO(exported.output))
    assert metrics["c2i"].tolist() == pytest.approx([KEPT[1], KEPT[2]])
    assert metrics["c2i_fc3"].tolist() == pytest.approx([LAYER[1], LAYER[2]])
    assert digest(db) == before  # a command that only reads never writes
    assert [r["c2i"] for r in stored_rows(db)] == pytest.approx([1 - KEPT[1], 1 - KEPT[2]])


def test_the_first_writing_command_converts_an_old_study_once(tmp_path):
    db = tmp_path / "study.db"
    old_study(db)
    url = f"sqlite:///{db}"
    for _ in range(2):  # the second open finds it converted: never complemented twice
        store = Store(url)
        study = store.join("g")
        assert study.user_attrs[C2I_ATTR] == "kept"
        rows = stored_rows(db)
        assert [r["c2i"] for r in rows] == pytest.approx([KEPT[1], KEPT[2]])
        assert [r["c2i_fc3"] for r in rows] == pytest.approx([LAYER[1], LAYER[2]])
        assert [r["pi"] for r in rows] == [-9.0, -9.0]  # other columns as they were
        store.engine.dispose()
    status = invoke(["status", str(db), "--format", "json"])
    assert json.loads(status.output)["trials"][0]["last_c2i"] == pytest.approx(KEPT[2])


# --- run folders ------------------------------------------------------------------------------
class Stop(Exception):
    pass


def stop(row, steps):
    raise Stop


@pytest.fixture
def runs(small_cifar_dir, tmp_path):
    """An uninterrupted 2-epoch run, and one stopped after epoch 1 as bopsweep 0.1 left it."""
    config = TrialConfig(
        width=1 / 16, device="cpu", data_dir=str(small_cifar_dir), batch_size=20, epochs=2,
        optimizer="latent",
    )  # fmt: skip
    run_trial(config, tmp_path / "full")
    old = tmp_path / "old"
    with pytest.raises(Stop):
        run_trial(config, old, on_epoch=stop)
    frame = pd.read_csv(old / "metrics.csv")
    c2i = [c for c in frame if c.startswith("c2i")]
    frame[c2i] = 1 - frame[c2i]
    frame.to_csv(old / "metrics.csv", index=False)
    state = torch.load(old / "checkpoint.pt", weights_only=True)
    del state[C2I_KEY]
    torch.save(state, old / "checkpoint.pt")
    return config, tmp_path / "full", old


def c2i_columns(rows: list[dict]) -> list[float]:
    return [v for r in rows for k, v in r.items() if k.startswith("c2i")]


def test_a_resumed_run_of_bopsweep_0_1_converts_its_metrics_once(runs):
    config, full, old = runs
    run_trial(config, old, resume=True)
    got, want = read_rows(old / "metrics.csv"), read_rows(full / "metrics.csv")
    assert len(c2i_columns(got)) == 20  # network-wide and 9 layers, 2 epochs
    assert c2i_columns(got) == pytest.approx(c2i_columns(want), abs=1e-12)
    assert not (old / PENDING_METRICS).exists()
    assert torch.load(old / "checkpoint.pt", weights_only=True)[C2I_KEY] == "kept"


def test_a_conversion_killed_before_the_checkpoint_is_marked_is_done_again(runs):
    config, full, old = runs
    (old / PENDING_METRICS).write_text("epoch,c2i\n1,0.123\n")  # a half-done earlier attempt
    run_trial(config, old, resume=True)
    got, want = read_rows(old / "metrics.csv"), read_rows(full / "metrics.csv")
    assert c2i_columns(got) == pytest.approx(c2i_columns(want), abs=1e-12)


def test_a_conversion_killed_after_the_checkpoint_is_marked_is_finished_not_redone(runs):
    config, full, old = runs
    rows = read_rows(old / "metrics.csv")
    kept = pd.DataFrame(rows)
    c2i = [c for c in kept if c.startswith("c2i")]
    kept[c2i] = 1 - kept[c2i]
    kept.to_csv(old / PENDING_METRICS, index=False)  # converted rows written, then the mark
    state = torch.load(old / "checkpoint.pt", weights_only=True)
    torch.save({**state, C2I_KEY: "kept"}, old / "checkpoint.pt")  # killed before the move
    run_trial(config, old, resume=True)
    got, want = read_rows(old / "metrics.csv"), read_rows(full / "metrics.csv")
    assert c2i_columns(got) == pytest.approx(c2i_columns(want), abs=1e-12)


# --- two-step trials' best epochs ----------------------------------------------------------------
STEP_VALS = {1: 0.30, 2: 0.60, 3: 0.40, 4: 0.45}  # epochs 1-2: step 1 (real kernels)


def old_two_step_study(path: Path) -> None:
    """A study of bopsweep 0.1 with a finished two-step trial whose best (0.60, epoch 2) is a
    step-1 epoch, as 0.1 counted it."""
    store = Store(f"sqlite:///{path}", create=True)
    base = TrialConfig(optimizer="latent", epochs=4, two_step=2)
    study, _ = store.create(grid_study("t", base, {"lr": [1e-3, 1e-2]}))
    config = base.resolved().to_dict()
    attrs = {"config_id": "c0", "label": "lr=0.01", "best_val_acc": 0.60, "best_epoch": 2,
             "epochs_done": 4, **config_attrs(config, study_base(study.user_attrs))}  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 1e-2)},
            value=STEP_VALS[4], user_attrs=attrs,
        )
    )  # fmt: skip
    first = study.get_trials(deepcopy=False)[0]
    rows = [{"epoch": e, "val_acc": v, "train_acc": 0.5} for e, v in STEP_VALS.items()]
    store.metrics.write(study_id(study), trial_id(first), rows, {})
    store.engine.dispose()
    as_of_0_1(path)


def test_an_old_two_step_trials_best_counts_binary_weight_epochs_read_and_converted(tmp_path):
    db = tmp_path / "study.db"
    old_two_step_study(db)
    before = digest(db)
    status = invoke(["status", str(db), "--format", "json"])
    [trial] = json.loads(status.output)["trials"]
    assert (trial["best_val_acc"], trial["best_epoch"]) == (0.45, 4)  # step 2's best
    assert (trial["step1_best_val_acc"], trial["step1_best_epoch"]) == (0.60, 2)
    table = invoke(["table", str(db), "--metric", "best", "--format", "csv"])
    assert table.exit_code == 0, table.output
    assert pd.read_csv(io.StringIO(table.output))["best_mean"].tolist() == [45.0]
    assert digest(db) == before  # read, not written
    store = Store(f"sqlite:///{db}")
    store.join("t")  # the first writing open converts it, attributes and all
    store.engine.dispose()
    (stored,) = optuna.load_study(study_name="t", storage=f"sqlite:///{db}").trials
    assert (stored.user_attrs["best_val_acc"], stored.user_attrs["best_epoch"]) == (0.45, 4)
    assert stored.user_attrs["step1_best_epoch"] == 2
    assert stored.user_attrs["label"] == "lr=0.01" and stored.value == 0.45  # the rest kept


def test_a_study_converted_by_a_writer_while_a_reader_reads_it_reads_right(tmp_path, monkeypatch):
    """A read-only command reads an old study while a writing command (say `resume` starting)
    converts it: it shows the paper's C2I whichever comes first."""
    import bopsweep.store.metrics as metrics

    db = tmp_path / "study.db"
    old_study(db)
    url = f"sqlite:///{db}"
    reader = Store.open_readonly(url)
    study = reader.load("g")
    read_rows = metrics.MetricTables._selected

    def rows_then_a_writer_converts(self, *args, **kwargs):
        frame = read_rows(self, *args, **kwargs)
        if not hasattr(rows_then_a_writer_converts, "done"):
            rows_then_a_writer_converts.done = True
            writer = Store(url)
            writer.join("g")  # commits the conversion after the rows were read
            writer.engine.dispose()
        return frame

    monkeypatch.setattr(metrics.MetricTables, "_selected", rows_then_a_writer_converts)
    assert reader.metrics.epochs_frame(study)["c2i"].tolist() == pytest.approx([KEPT[1], KEPT[2]])
