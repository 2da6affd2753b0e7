"""Bad input anywhere gets one line and exit code 2, and nothing is created or changed first.

Each case goes through the command line in an empty folder (the data set lives elsewhere), and
the folder must still be empty afterwards: no database, no run folder, no lock file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bopsweep.studies import TrialConfig
from bopsweep.trial.run_dir import RunDir
from tests.helpers import TINY, invoke, one_line_error


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def refused(args: list[str], fragment: str, folder: Path) -> None:
    one_line_error(invoke(args), fragment)
    assert sorted(p.name for p in folder.iterdir()) == [], "something was created first"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--seed", "-1"], "seed must be in [0, 2^32)"),
        (["--seed", str(2**63 + 5)], "seed must be in [0, 2^32)"),
        (["--width", "1e9"], "width 1e+09 with batch size"),
        (["--schedule", "gamma=exponential(rate=inf, every=1)"], "must be finite"),
        (["--schedule", "gamma=exponential(rate=1e308, every=1)"], "gamma leaves (0, 1]"),
        (["--schedule", "gamma=exponential(rate=0.1, every=1, staircase=maybe)"], "staircase"),
        (["--schedule", "tau=polynomial(end=nan)"], "must be finite"),
        (["--schedule", "gamma=exponential(rate=0.1, every=inf)"], "must be finite"),
        (["--lr", "0.1", "--schedule", "lr=exponential(rate=1e300, every=1)"], "lr leaves"),
    ],
)
def test_train_refuses_before_creating_its_folder(args, fragment, empty_cwd, small_cifar_dir):
    data = ["--data-dir", str(small_cifar_dir), "--epochs", "3"]
    refused(["train", *data, *TINY, *args], fragment, empty_cwd)  # args last: they win


def test_a_schedule_that_leaves_its_range_names_the_epoch(empty_cwd, small_cifar_dir):
    args = ["train", "--data-dir", str(small_cifar_dir), "--epochs", "5", "--sigma", "0.1"]
    schedule = ["--schedule", "sigma=exponential(rate=10, every=1)"]
    refused([*args, *schedule, *TINY], "sigma leaves (0, 1] in epoch 3", empty_cwd)
    # the same schedule over two epochs stays at or below 1: accepted by the check
    assert TrialConfig.from_dict(
        {
            "sigma": 0.1,
            "epochs": 2,
            "schedules": {"sigma": {"kind": "exponential", "rate": 10, "every": 1}},
        }
    ).resolved()


def test_a_study_whose_schedule_leaves_its_range_is_refused_before_it_exists(
    empty_cwd, small_cifar_dir, tmp_path
):
    study_file = tmp_path / "up.toml"
    study_file.write_text(
        '[study]\nname = "up"\nkind = "arms"\n[base]\nepochs = 5\nsigma = 0.1\n'
        '[[arms]]\nlabel = "up"\n[arms.schedules.sigma]\nkind = "exponential"\n'
        "rate = 10\nevery = 1\n"
    )
    args = ["run", str(study_file), "--data-dir", str(small_cifar_dir), "--device", "cpu"]
    refused(args, "sigma leaves (0, 1] in epoch 3", empty_cwd)


def test_train_out_naming_a_file_is_refused(empty_cwd, small_cifar_dir):
    (empty_cwd / "notes.txt").write_text("mine\n")
    args = ["train", "--data-dir", str(small_cifar_dir), "--out", "notes.txt", *TINY]
    one_line_error(invoke(args), "is a file")
    assert (empty_cwd / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('{"epochs": "ten"}', "epochs in"),
        ("[1, 2, 3]", "must hold a JSON object"),
        ('{"optimizer": 5}', "optimizer in"),
    ],
)
def test_resume_of_a_folder_with_a_bad_config_is_refused(config, fragment, tmp_path):
    (tmp_path / "config.json").write_text(config)
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(invoke(["train", "--resume", str(tmp_path)]), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "state",
    [
        {"epoch": "3", "step": 30, "model": {}, "binary_opt": {}, "real_opt": {}},
        {"epoch": 3, "model": {}},
        [1, 2, 3],
    ],
)
def test_resume_from_a_checkpoint_of_the_wrong_shape_is_refused(state, tmp_path, small_cifar_dir):
    config = TrialConfig(data_dir=str(small_cifar_dir), width=0.0625, device="cpu")
    config.save(tmp_path / "config.json")
    torch.save(state, tmp_path / "checkpoint.pt")
    result = invoke(["train", "--resume", str(tmp_path)])
    one_line_error(result, "is not a bopsweep checkpoint")


def test_an_interrupted_trim_on_resume_keeps_the_rows(tmp_path, monkeypatch):
    """Ctrl-C while ``--resume`` drops the rows past the checkpoint leaves the file whole."""
    import csv

    run = RunDir(tmp_path)
    (tmp_path / "metrics.csv").write_text("epoch,val_acc\n1,0.5\n2,0.6\n3,0.7\n")
    before = (tmp_path / "metrics.csv").read_text()

    def interrupted(self, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run._truncate("metrics.csv", 2)
    assert (tmp_path / "metrics.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temp file left
    monkeypatch.undo()
    run._truncate("metrics.csv", 2)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,val_acc",
        "1,0.5",
        "2,0.6",
    ]


# --- studies ----------------------------------------------------------------------------------
def study_file(folder: Path, text: str) -> Path:
    path = folder.parent / "study.toml"  # outside the folder that must stay empty
    path.write_text(text)
    return path


SCHEDULE_STUDY = '[study]\nkind = "schedule"\n[base]\nepochs = 7\n[schedule]\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (SCHEDULE_STUDY + 'param = "tau"\nkind = "exponential"\nfactor = "ten"', "factor in"),
        (SCHEDULE_STUDY + 'param = "tau"\nkind = "exponential"\nvariants = "biased"', "variants"),
        (SCHEDULE_STUDY + 'param = "tau"\nkind = "exponential"\nevery = "x"', "every in"),
        (SCHEDULE_STUDY + 'param = 5\nkind = "exponential"', "param in"),
        ('[study]\nkind = "grid"\nseeds = "3"\n[grid]\ntau = [1e-6]', "seeds must be"),
        ('[study]\nkind = "grid"\n[grid]\ngamma = 1e-7', "non-empty list"),
    ],
)
def test_study_files_with_values_of_the_wrong_type_are_refused(text, fragment, empty_cwd):
    refused(["run", str(study_file(empty_cwd, text)), "--device", "cpu"], fragment, empty_cwd)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["pow10", "--tau", "1e-3:inf"], "positive powers of ten"),
        (["pow10", "--tau", "nan:1e-3"], "positive powers of ten"),
        (["grid", "--param", "tau", "--seeds", "0"], "--seeds must be >= 1"),
        (["grid", "--param", "tau", "--seeds", "-2"], "--seeds must be >= 1"),
        (["grid", "--param", "tau", "--workers", "0"], "--workers must be >= 1"),
        (["grid", "--param", "tau", "--max-retries", "-1"], "--max-retries must be >= 0"),
        (["grid", "--param", "tau", "--seed", "-1"], "seed must be in"),
        (["grid", "--param", "tau", "--seed", str(2**32 - 2), "--seeds", "3"], "seed must be in"),
        (
            ["pow10", "--gamma", "1e-12:1e-1", "--sigma", "1e-12:1e-1", "--tau", "1e-3:1e-1"],
            "432 trials, more than --max-trials 100",
        ),
        (["schedule", "--param", "tau", "--lr-every", "0"], "--lr-every must be a number"),
        (["schedule", "--param", "tau", "--lr-every", "nan"], "--lr-every must be a number"),
        (["optuna", "--sampler-seed", "-1"], "sampler seed must be an integer in [0, 2^32)"),
        (["optuna", "--sampler-seed", str(2**40)], "sampler seed must be"),
        (["optuna", "--fix", "variant=bop", "--space", "SPACE"], "not one of the space's"),
        (["optuna", "--seeds", "0"], "--seeds must be >= 1"),
        (["optuna", "--seed", str(2**32 - 2), "--seeds", "3"], "passes the largest seed"),
    ],
)
def test_study_commands_refuse_before_creating_the_study(args, fragment, empty_cwd):
    space = empty_cwd.parent / "space.toml"
    space.write_text('[space]\nvariants = ["bop2-biased", "bop2-unbiased"]\n')
    args = [str(space) if a == "SPACE" else a for a in args]
    refused([*args, "--device", "cpu", "--max-trials", "100"], fragment, empty_cwd)


def test_a_huge_grid_is_refused_without_expanding_it(empty_cwd):
    values = ",".join(f"{k}e-9" for k in range(1, 1001))
    args = ["grid", "--param", "tau", "--values", values, "--param", "gamma", "--values", values]
    refused(
        [*args, "--device", "cpu"], "1,000,000 trials, more than --max-trials 10,000", empty_cwd
    )


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ("space = 5", "must be a table"),
        ('[space]\ngamma = "x"', "gamma in"),
        ('[space]\nnorms = ["batch"]\n[space.fixed]\nnorm = "layer"', "not one of the space's"),
        (
            '[space]\nschedules = ["constant"]\n[space.fixed]\ntau_schedule = "polynomial"',
            "not one of the space's",
        ),
        ('[space.fixed]\ngamma = "x"', "out of range"),
    ],
)
def test_space_files_of_the_wrong_shape_are_refused(space, fragment, empty_cwd):
    path = empty_cwd.parent / "space.toml"
    path.write_text(space)
    refused(["optuna", "--space", str(path), "--device", "cpu"], fragment, empty_cwd)


def test_resume_with_an_unknown_device_changes_nothing(tmp_path):
    import hashlib

    from tests.helpers import make_study

    make_study(tmp_path / "study.db")
    before = hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest()
    files = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(["resume", str(tmp_path / "study.db"), "--device", "tpu"])
    one_line_error(result, "unknown device 'tpu'")
    assert hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_config_json_is_written_whole(tmp_path):
    TrialConfig(epochs=3).save(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
