"""``--dry-run``: checks what a run checks, prints the plan, and creates nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bopsweep.driver.plan_preview import Preview, render_preview
from bopsweep.driver.queue import TrialQueue
from bopsweep.store import Store
from tests.helpers import invoke, one_line_error

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def where(folder: Path, data: Path) -> list[str]:
    return ["--storage", f"sqlite:///{folder / 'study.db'}", "--data-dir", str(data),
            "--device", "cpu", "--quiet"]  # fmt: skip


COMMANDS = {
    "grid": ["grid", "--param", "gamma"],
    "pow10": ["pow10", "--gamma", "1e-9:1e-5", "--sigma", "1e-5:1e-1"],
    "schedule": ["schedule", "--param", "tau"],
    "run": ["run", str(STUDIES / "quick.toml")],
    "optuna": ["optuna", "--trials", "7"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_dry_run_prints_the_plan_and_creates_nothing(command, small_cifar_dir, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = invoke([*COMMANDS[command], *where(folder, small_cifar_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert list(folder.iterdir()) == []  # no database, lock file or checkpoint folder
    out = result.output
    assert out.startswith("dry run: nothing is created")
    assert f"sqlite:///{folder / 'study.db'}" in out
    assert "the database does not exist yet" in out
    assert "rough estimate" in out and "would run on cpu0" in out
    if command == "optuna":
        assert "7 trials in total, 0 exist" in out and "sampled" in out
    else:
        assert "0 already in the study" in out


def test_a_long_plan_lists_twenty_trials_and_counts_the_rest(small_cifar_dir, tmp_path):
    result = invoke([*COMMANDS["pow10"], *where(tmp_path, small_cifar_dir), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "25 trials planned" in result.output
    listed = [line for line in result.output.splitlines() if line.startswith("  ")]
    assert len(listed) == 21 and listed[-1] == "  … 5 more"
    assert "gamma=1e-09 sigma=1e-05" in listed[0]
    assert list(tmp_path.iterdir()) == []


def test_dry_run_counts_the_trials_an_existing_study_holds(small_cifar_dir, tmp_path):
    opts = where(tmp_path, small_cifar_dir)
    grid = ["grid", "--param", "gamma", "--values", "1e-8,1e-7,1e-6", *opts]
    two = ["grid", "--param", "gamma", "--values", "1e-8,1e-7", *opts, "--study", "g"]
    assert invoke([*two, "--queue-only"]).exit_code == 0
    db = tmp_path / "study.db"
    # a study of the same definition: queued, one of its trials complete
    result = invoke([*grid, "--study", "h", "--queue-only"])
    assert result.exit_code == 0, result.output
    store = Store(f"sqlite:///{db}")
    study = store.load("h")
    queue = TrialQueue(study)
    first = queue.claim()
    assert first is not None
    study.tell(first.number, 0.5)
    store.engine.dispose()
    before = sorted(p.name for p in tmp_path.iterdir()), digest(db)

    result = invoke([*grid, "--study", "h", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3 trials planned, 3 already in the study, 0 would be queued" in result.output
    assert result.output.count("(in the study)") == 3
    assert "2 trials to train × 100 epochs" in result.output

    # the other study's database holds 2 of these 3 under another name: counted per study
    result = invoke([*two, "--dry-run"])
    assert "2 trials planned, 2 already in the study, 0 would be queued" in result.output
    result = invoke([*grid, "--study", "new", "--dry-run"])
    assert "3 trials planned, 0 already in the study, 3 would be queued" in result.output
    assert "the database exists; the study is new" in result.output
    assert (sorted(p.name for p in tmp_path.iterdir()), digest(db)) == before

    resume = invoke(["resume", str(db), "--study", "h", "--device", "cpu",
                                 "--dry-run"])  # fmt: skip
    assert resume.exit_code == 0, resume.output
    assert "3 already in the study" in resume.output and "2 trials to train" in resume.output
    assert (sorted(p.name for p in tmp_path.iterdir()), digest(db)) == before


def test_dry_run_counts_an_optuna_studys_trials(small_cifar_dir, tmp_path):
    search = ["optuna", "--trials", "6", "--study", "s", *where(tmp_path, small_cifar_dir)]
    assert invoke([*search, "--queue-only"]).exit_code == 0
    store = Store(f"sqlite:///{tmp_path / 'study.db'}")
    TrialQueue(store.load("s")).enqueue({"gamma": 1e-7}, "c1", "x", {}, attempt=0)
    store.engine.dispose()
    before = digest(tmp_path / "study.db")
    result = invoke([*search, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "6 trials in total, 1 exist (the study exists)" in result.output
    assert digest(tmp_path / "study.db") == before


def test_a_seed_averaged_search_counts_each_configurations_seed_runs(small_cifar_dir, tmp_path):
    """``--seeds K`` on the command line and ``seeds = K`` in a study file of kind optuna mean
    the same: K runs of each of the search's configurations, planned, counted and estimated."""
    study_file = tmp_path / "search.toml"
    original = (STUDIES / "optuna_search.toml").read_text()
    study_file.write_text(original.replace('kind = "optuna"', 'kind = "optuna"\nseeds = 3'))
    folder = tmp_path / "empty"
    folder.mkdir()
    for command in (["run", str(study_file)], ["optuna", "--trials", "50", "--seeds", "3"]):
        result = invoke([*command, *where(folder, small_cifar_dir), "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "50 configurations × 3 seeds = 150 trials in total, 0 exist" in result.output
        assert "150 trials to train × 100 epochs" in result.output
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["grid", "--param", "nonsense"], "nonsense"),
        (["grid", "--param", "gamma", "--max-retries", "-1"], "--max-retries"),
        (["grid", "--param", "gamma", "--max-trials", "2"], "--max-trials"),
        (["optuna", "--gamma", "1e-3:1e-5"], "gamma"),
        (["grid", "--param", "gamma", "--optimizer", "adam"], "adam"),
    ],
)
def test_bad_input_is_still_one_line_and_exit_2(args, fragment, small_cifar_dir, tmp_path):
    result = invoke([*args, *where(tmp_path, small_cifar_dir), "--dry-run"])
    one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_bad_storage_and_data_are_refused_as_a_run_refuses_them(small_cifar_dir, tmp_path):
    grid = ["grid", "--param", "gamma", "--device", "cpu", "--dry-run"]
    data = ["--data-dir", str(small_cifar_dir)]
    missing = f"sqlite:///{tmp_path / 'no' / 'study.db'}"
    one_line_error(invoke([*grid, *data, "--storage", missing]), "does not exist")
    (tmp_path / "notes.db").write_text("not a database")
    notes = f"sqlite:///{tmp_path / 'notes.db'}"
    one_line_error(invoke([*grid, *data, "--storage", notes]), "not a SQLite")
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    nodata = ["--data-dir", str(tmp_path / "nodata")]
    one_line_error(invoke([*grid, *storage, *nodata]), "nodata")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]

    # a study of that name with another definition: refused, as a run refuses it
    where_ = where(tmp_path, small_cifar_dir)
    assert invoke(["grid", "--param", "tau", *where_, "--study", "x",
                               "--queue-only"]).exit_code == 0  # fmt: skip
    before = digest(tmp_path / "study.db")
    result = invoke(["grid", "--param", "gamma", *where_, "--study", "x", "--dry-run"])
    one_line_error(result, "different definition")
    assert digest(tmp_path / "study.db") == before


def test_the_storage_env_var_is_used_and_shown_in_help(small_cifar_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    data = ["--data-dir", str(small_cifar_dir), "--device", "cpu"]
    result = invoke(["grid", "--param", "gamma", *data, "--dry-run"], env={"BOPSWEEP_STORAGE": url})
    assert result.exit_code == 0, result.output
    assert f"in {url}" in result.output and list(tmp_path.iterdir()) == []
    for command in ("grid", "pow10", "schedule", "run", "optuna", "status", "resume"):
        help_text = invoke([command, "--help"], terminal_width=200).output
        assert "$BOPSWEEP_STORAGE" in help_text, command
        if command not in ("status",):
            assert "--dry-run" in help_text, command


def test_render_preview_is_pure_and_labels_cuda_time_unknown():
    preview = Preview(
        name="s", kind="optuna", storage="postgresql://u:***@h/db", database_exists=True,
        study_exists=True, total=50, planned=[], held=set(), existing=10, to_run=40,
        epochs=100, device="cuda", slots=["gpu0", "gpu1"], root="/ck/s", data_dir="/d",
        download=False, queue_only=False, seconds=None, sampled=True,
    )  # fmt: skip
    lines = render_preview(preview)
    assert "50 trials in total, 10 exist (the study exists)" in lines[2]
    assert lines[-1].startswith("time: unknown on CUDA")
    assert "would run on gpu0, gpu1" in lines[-2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
