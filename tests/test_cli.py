"""The command line: start-up cost, one training run, bad input, Ctrl-C and resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import typer.main

from bopsweep.cli import app
from bopsweep.cli.options import PANELS
from bopsweep.studies import TrialConfig
from bopsweep.trial.run_dir import read_rows
from bopsweep.trial.train import run_trial
from tests.helpers import TINY, invoke, one_line_error


def bopsweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bopsweep", *args], capture_output=True, text=True, timeout=300
    )


HEAVY = ("torch", "optuna", "pandas", "matplotlib", "numpy", "sqlalchemy")


def imported_beyond_typer(code: str, watched: tuple[str, ...]) -> set[str]:
    """The packages of ``watched`` that running ``code`` imports and ``import typer`` does not
    (Typer before 0.16 imports Rich itself)."""
    script = (
        "import sys, typer\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        f"print(' '.join(m for m in {watched!r} if m in set(sys.modules) - before), "
        "file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stderr.split())


@pytest.mark.parametrize(
    "args, watched",
    [
        # bopsweep --help lists the commands in plain text: not even Rich
        (["--help"], (*HEAVY, "rich")),
        # a command's --help draws its panels with Rich, and needs nothing more
        (["grid", "--help"], HEAVY),
    ],
)
def test_help_imports_no_heavy_package(args, watched):
    code = (
        "from bopsweep.cli import app\n"
        "try:\n"
        f"    app({args!r}, prog_name='bopsweep')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code"
    )
    assert imported_beyond_typer(code, watched) == set()


def test_importing_the_cli_imports_no_heavy_package():
    assert imported_beyond_typer("import bopsweep.cli", (*HEAVY, "rich")) == set()


def test_every_command_has_help():
    result = invoke(["--help"], terminal_width=80)
    assert result.exit_code == 0 and "train" in result.output
    # listed without being built, each as it would list itself built
    group = typer.main.get_command(app)
    names = list(group.commands)  # type: ignore[attr-defined]
    assert len(names) == 14 and names[:2] == ["train", "grid"]
    limit = 80 - 6 - max(map(len, names))  # Click's spacing, on a terminal 80 wide
    for name in names:
        short = group.commands[name].get_short_help_str(limit)  # type: ignore[attr-defined]
        assert re.search(rf"^  {name} +{re.escape(short)}$", result.output, re.M), name
    result = invoke(["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--optimizer", "--unbiased", "--schedule", "--resume", "--subset", "--norm"):
        assert flag in result.output


def panels(output: str) -> dict[str, str]:
    """The boxes of a command's --help, by title: ``╭─ Trial ──╮ … ╰──╯``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)  # colours, where a CI forces a terminal
    found = {}
    for match in re.finditer(r"╭─ (\w+) ─+╮\n(.*?)╰", text, re.S):
        found[match[1]] = found.get(match[1], "") + match[2]
    return found


def test_grid_help_shows_its_options_in_panels():
    result = invoke(["grid", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    boxes = panels(result.output)
    assert {"Trial", "Study", "Dispatch", "Storage"} <= set(boxes)
    expected = {
        "Trial": ("--optimizer", "--epochs", "--batch-size", "--device", "--data-dir", "--seed"),
        "Study": ("--param", "--values", "--study", "--seeds", "--set", "--queue-only",
                  "--dry-run"),
        "Dispatch": ("--gpus", "--workers", "--per-gpu", "--max-retries",
                     "--heartbeat-interval", "--stack", "--cold-starts", "--tensorboard",
                     "--quiet"),
        "Storage": ("--storage", "--checkpoint-dir"),
    }  # fmt: skip
    for title, options in expected.items():
        for option in options:
            assert re.search(rf"{option}\b(?!-)", boxes[title]), (title, option)
            others = [box for name, box in boxes.items() if name != title]
            assert not any(re.search(rf"{option}\b(?!-)", box) for box in others), option


def test_every_option_of_every_command_is_in_a_panel():
    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name == "option":
                assert param.rich_help_panel in PANELS, (name, param.name)


def test_help_texts_survive_rich_markup():
    """Command help is Rich markup: a [word] in a help text would vanish from it."""
    from rich.text import Text

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            assert Text.from_markup(text).plain == text, (name, text)


def test_train_writes_metrics_steps_and_checkpoint(small_cifar_dir, tmp_path):
    out = tmp_path / "run"
    result = invoke(
        ["train", "--data-dir", str(small_cifar_dir), "--epochs", "2", "--out", str(out), *TINY],
    )
    assert result.exit_code == 0, result.output
    assert "done: final val_acc" in result.output
    for name in ("metrics.csv", "steps.csv", "checkpoint.pt", "config.json", "summary.json"):
        assert (out / name).exists(), name
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_acc", "val_acc", "val_loss", "pi", "pi_fc3"} <= set(header)
    assert len((out / "metrics.csv").read_text().splitlines()) == 3


def test_schedule_and_subset_options_reach_the_trial(small_cifar_dir, tmp_path):
    out = tmp_path / "run"
    schedule = "gamma=exponential(rate=0.1, every=1)"
    args = ["--subset", "100", "--optimizer", "bop", "--schedule", schedule]
    data = ["--data-dir", str(small_cifar_dir), "--epochs", "2", "--out", str(out)]
    result = invoke(["train", *data, *args, *TINY])
    assert result.exit_code == 0, result.output
    config = TrialConfig.load(out / "config.json")
    assert config.subset == 100 and config.optimizer == "bop" and config.gamma == 1e-4
    rows = read_rows(out / "metrics.csv")
    assert [r["step"] for r in rows] == [5, 10]  # 100 images / batch 20 = 5 steps an epoch
    assert [r["gamma"] for r in rows] == pytest.approx([1e-4, 1e-5])


def test_schedule_lr_every_queues_the_reference_lr_decay_in_every_arm(
    small_cifar_dir, tmp_path, monkeypatch
):
    import optuna

    monkeypatch.chdir(tmp_path)
    args = ["schedule", "--param", "sigma", "--epochs", "350", "--queue-only"]
    data = ["--data-dir", str(small_cifar_dir), *TINY]
    for name, more in (("decay", ["--lr-every", "100"]), ("constant", [])):
        result = invoke([*args, "--study", name, *more, *data])
        assert result.exit_code == 0, result.output
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    decay = optuna.load_study(study_name="decay", storage=storage).trials
    assert len(decay) == 6  # biased and unbiased: constant, increasing, decreasing
    for t in decay:
        assert t.params["lr_schedule"] == "exponential" and t.params["lr_schedule_staircase"]
        assert (t.params["lr_schedule_rate"], t.params["lr_schedule_every"]) == (0.1, 100)
    constant = optuna.load_study(study_name="constant", storage=storage).trials
    assert len(constant) == 6 and not any("lr_schedule" in t.params for t in constant)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gamma", "-1"], "gamma must be in (0, 1]"),
        (["--gamma", "0"], "gamma must be in (0, 1]"),
        (["--gamma", "2"], "gamma must be in (0, 1]"),
        (["--sigma", "0"], "sigma must be in (0, 1]"),
        (["--sigma", "1.5"], "sigma must be in (0, 1]"),
        (["--tau", "-1e-6"], "tau must be >= 0"),
        (["--optimizer", "adamw"], "'adamw' is not one of 'bop', 'bop2', 'latent'"),
        (["--width", "0"], "width must be > 0"),
        (["--width", "-0.5"], "width must be > 0"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--norm", "group"], "'group' is not one of 'batch', 'layer'"),
        (["--schedule", "gamma=cosine"], "unknown schedule kind"),
        (["--optimizer", "bop", "--schedule", "sigma=constant"], "bop optimizer has no sigma"),
        (["--device", "tpu"], "unknown device"),
        (["--subset", "100000"], "--subset must be in 1..200"),
    ],
)
def test_bad_values_get_one_line_and_exit_2(small_cifar_dir, tmp_path, args, fragment):
    result = invoke(
        ["train", "--data-dir", str(small_cifar_dir), "--out", str(tmp_path / "r"), *TINY, *args],
    )
    one_line_error(result, fragment)


def test_missing_and_malformed_data_dirs_get_one_line(tmp_path):
    result = invoke(["train", "--data-dir", str(tmp_path / "absent"), *TINY])
    one_line_error(result, "does not exist")
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02garbage")
    result = invoke(["train", "--data-dir", str(tmp_path), *TINY])
    one_line_error(result, "batches.meta is missing")


def test_unreadable_checkpoint_gets_one_line(small_cifar_dir, tmp_path):
    out = tmp_path / "run"
    run_trial(TrialConfig(data_dir=str(small_cifar_dir), epochs=1, width=1 / 16, device="cpu"), out)
    (out / "checkpoint.pt").write_bytes(b"this is not a checkpoint")
    result = invoke(["train", "--resume", str(out), "--quiet"])
    one_line_error(result, "cannot read checkpoint")
    result = invoke(["train", "--resume", str(tmp_path / "nothing"), "--quiet"])
    one_line_error(result, "holds no bopsweep run to resume")


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resume_matches_an_uninterrupted_run(small_cifar_dir, tmp_path):
    """A real SIGINT, in this process: it arrives while the third epoch trains."""
    out, epochs = tmp_path / "run", 8
    metrics = out / "metrics.csv"

    def interrupt_after_two_epochs() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            metrics.exists() and len(metrics.read_text().splitlines()) >= 3
        ):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    args = ["train", "--data-dir", str(small_cifar_dir), "--epochs", str(epochs), "--out", str(out)]
    threading.Thread(target=interrupt_after_two_epochs, daemon=True).start()
    result = invoke([*args, *TINY])
    assert result.exit_code == 130, result.output
    assert f"bopsweep train --resume {out}" in result.output
    done = len(metrics.read_text().splitlines()) - 1
    assert 2 <= done < epochs  # interrupted mid-run, finished epochs kept

    resumed = invoke(["train", "--resume", str(out), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    reference = tmp_path / "reference"
    run_trial(TrialConfig.load(out / "config.json"), reference)
    assert metrics.read_text() == (reference / "metrics.csv").read_text()
    assert (out / "steps.csv").read_text() == (reference / "steps.csv").read_text()


def test_python_m_bopsweep_runs_the_cli():
    result = bopsweep("--version")
    assert result.returncode == 0 and result.stdout.startswith("bopsweep ")
