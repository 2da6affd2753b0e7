"""A study that grows: running its command again with more values or more seeds queues only
the missing trials, and the grown study equals, trial for trial, the study run at its final
size from the start."""

from __future__ import annotations

import optuna
import pytest

from tests.helpers import TINY, bopsweep, invoke


def trials_of(folder):
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{folder / 'study.db'}")
    attrs = ("label", "best_val_acc", "best_epoch")
    return {
        t.user_attrs["config_id"]: (t.state.name, t.value, t.intermediate_values,
                                    *(t.user_attrs[a] for a in attrs))
        for t in study.trials
    }  # fmt: skip


@pytest.mark.slow
def test_a_grown_study_equals_the_study_run_at_its_final_size(small_cifar_dir, tmp_path):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    grown.mkdir(), fresh.mkdir()
    common = ["grid", "--param", "gamma", "--study", "g", "--data-dir", str(small_cifar_dir)]
    small = [*common, "--values", "1e-7,1e-6", *TINY, "--epochs", "2"]
    final = [*common, "--values", "1e-7,1e-6,1e-5", "--seeds", "2", *TINY, "--epochs", "2"]
    assert bopsweep(*small, cwd=grown).returncode == 0
    plan = bopsweep(*final, "--dry-run", cwd=grown)
    assert "6 trials planned, 2 already in the study, 4 would be queued" in plan.stdout
    assert bopsweep(*final, cwd=grown).returncode == 0
    assert bopsweep(*final, cwd=fresh).returncode == 0
    got, expected = trials_of(grown), trials_of(fresh)
    assert len(got) == 6 and got == expected  # values exact: the same trials, trained alike
    assert all(state == "COMPLETE" for state, *_ in got.values())
    table = invoke(["table", str(grown / "study.db"), "--format", "csv"])
    assert table.exit_code == 0, table.output
    rows = table.output.strip().splitlines()[1:]
    assert len(rows) == 3 and all(row.split(",")[1] == "2" for row in rows)  # n = 2 seeds
