"""Study definitions: grid, power-of-ten, schedule and arms studies, and the shipped study files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bopsweep.defaults import Pruner
from bopsweep.errors import UserError
from bopsweep.studies import (
    TrialConfig,
    config_id,
    decades_around,
    expand,
    grid_study,
    load_study_file,
    parse_pow10_range,
    pow10_study,
    schedule_study,
)
from bopsweep.studies.designs import SearchDesign
from bopsweep.studies.stored import spec_from_stored
from bopsweep.trial.schedules import Schedule

STUDIES = Path(__file__).resolve().parent.parent / "studies"
BASE = TrialConfig(optimizer="bop2", unbiased=True, gamma=1e-7, sigma=1e-3, tau=1e-6)

EXPECTED = {  # file: (kind, number of trials)
    "fig2_variants_norms.toml": ("grid", 4),
    "fig3_gamma.toml": ("grid", 5),
    "fig3_sigma.toml": ("grid", 5),
    "fig3_tau.toml": ("grid", 5),
    "fig4_gamma.toml": ("schedule", 6),
    "fig4_sigma.toml": ("schedule", 6),
    "fig4_tau.toml": ("schedule", 6),
    "fig4_gamma_lr_constant.toml": ("schedule", 6),
    "fig4_sigma_lr_constant.toml": ("schedule", 6),
    "fig4_tau_lr_constant.toml": ("schedule", 6),
    "fig5_bop_vs_bop2.toml": ("arms", 4),
    "adam_vs_bop.toml": ("arms", 15),
    "adam_lr.toml": ("arms", 10),
    "adambnn.toml": ("arms", 6),
    "pow10_search.toml": ("pow10", 125),
    "table1_paper.toml": ("arms", 9),  # 3 arms × 3 seeds
    "table1_code.toml": ("arms", 9),
    "quick.toml": ("grid", 5),
    "optuna_search.toml": ("optuna", 0),  # sampled as it runs: nothing planned
}


def test_every_shipped_study_file_loads_and_expands():
    files = sorted(p.name for p in STUDIES.glob("*.toml"))
    assert files == sorted(EXPECTED)
    for name, (kind, n) in EXPECTED.items():
        spec = load_study_file(STUDIES / name)
        planned = expand(spec)
        assert spec.kind == kind and len(planned) == n, name
        assert spec.description, f"{name} says what it is"
        assert len({p.config_id for p in planned}) == n
    search = load_study_file(STUDIES / "optuna_search.toml").design
    assert isinstance(search, SearchDesign)
    assert search.settings.trials == 50 and search.settings.pruner == Pruner.MEDIAN
    assert search.settings.space.variants == ("bop2-biased", "bop2-unbiased")


def test_fig3_ablations_sweep_two_decades_around_the_optimum():
    for param, centre in (("gamma", 1e-7), ("sigma", 1e-3), ("tau", 1e-6)):
        planned = expand(load_study_file(STUDIES / f"fig3_{param}.toml"))
        assert [getattr(p.config, param) for p in planned] == pytest.approx(decades_around(centre))
        for p in planned:
            assert p.config.unbiased and p.config.norm == "batch" and p.config.epochs == 100
            others = {"gamma": 1e-7, "sigma": 1e-3, "tau": 1e-6}
            others.pop(param)
            assert all(getattr(p.config, k) == v for k, v in others.items())


def test_table1_ships_both_readings_of_the_schedules():
    def bop2_schedules(name):
        planned = expand(load_study_file(STUDIES / name))
        arm = next(p for p in planned if p.label == "Bop2ndOrder biased")
        c = arm.config
        return {k: (c.initial(k), c.schedules[k].end) for k in ("gamma", "sigma", "tau", "lr")}

    assert bop2_schedules("table1_paper.toml") == {
        "gamma": (1e-5, 1e-8),
        "sigma": (1e-2, 1e-5),
        "tau": (1e-7, 1e-2),
        "lr": (0.01, 0.001),
    }
    assert bop2_schedules("table1_code.toml") == {
        "gamma": (1e-2, 1e-5),
        "sigma": (1e-7, 1e-2),
        "tau": (1e-5, 1e-8),
        "lr": (0.01, 0.001),
    }
    bop = next(p for p in expand(load_study_file(STUDIES / "table1_code.toml")) if p.label == "Bop")
    assert bop.config.schedules["gamma"] == Schedule(kind="exponential", rate=0.1, every=100)
    assert bop.config.batch_size == 50 and bop.config.epochs == 500


def test_grid_with_several_axes_is_the_cartesian_product_times_seeds():
    spec = grid_study("g", BASE, {"gamma": [1e-8, 1e-7], "tau": [1e-6, 1e-5, 1e-4]}, seeds=2)
    planned = expand(spec)
    assert len(planned) == 12
    points = {(p.config.gamma, p.config.tau, p.config.seed) for p in planned}
    assert len(points) == 12 and {s for *_, s in points} == {0, 1}
    assert planned[0].params["gamma"] == 1e-8 and "seed" in planned[0].params


def test_config_ids_are_stable_and_ignore_where_a_trial_runs():
    a = BASE.resolved()
    assert config_id(a) == config_id(TrialConfig.from_dict(a.to_dict()))
    moved = TrialConfig.from_dict({**a.to_dict(), "device": "cuda", "data_dir": "/elsewhere"})
    assert config_id(moved) == config_id(a)
    other = TrialConfig.from_dict({**a.to_dict(), "gamma": 1e-6})
    assert config_id(other) != config_id(a)


def test_pow10_ranges():
    assert parse_pow10_range("gamma", "1e-9:1e-5") == [1e-9, 1e-8, 1e-7, 1e-6, 1e-5]
    assert parse_pow10_range("tau", "0.001:0.001") == [1e-3]
    spec = pow10_study("p", BASE, {"gamma": "1e-8:1e-7", "sigma": "1e-3:1e-1"})
    assert len(expand(spec)) == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e-9:3e-5", "3e-05 is not a power of ten"),
        ("1e-5:1e-9", "runs backwards"),
        ("0:1e-5", "positive powers of ten"),
        ("-1e-5:1e-3", "positive powers of ten"),
        ("1e-5", "range LOW:HIGH"),
        ("a:b", "range LOW:HIGH"),
    ],
)
def test_bad_pow10_ranges(text, message):
    with pytest.raises(UserError, match=message):
        parse_pow10_range("gamma", text)


def test_schedule_study_has_constant_increasing_and_decreasing_arms_per_variant():
    spec = schedule_study("s", TrialConfig(epochs=350, **PAPER), "tau", "exponential", every=100)
    planned = expand(spec)
    assert [p.label for p in planned] == [
        "biased constant",
        "biased increasing",
        "biased decreasing",
        "unbiased constant",
        "unbiased increasing",
        "unbiased decreasing",
    ]
    up, down = planned[1].config.schedules["tau"], planned[2].config.schedules["tau"]
    assert up == Schedule(kind="exponential", rate=10, every=100)
    assert down.rate == pytest.approx(0.1) and down.every == 100
    assert planned[0].config.schedules == {} and planned[3].config.unbiased
    poly = expand(schedule_study("s", TrialConfig(**PAPER), "gamma", "polynomial", factor=100))
    assert poly[1].config.schedules["gamma"].end == pytest.approx(1e-5)
    assert poly[2].config.schedules["gamma"].end == pytest.approx(1e-9)


PAPER = {"gamma": 1e-7, "sigma": 1e-3, "tau": 1e-6}
REFERENCE_LR_DECAY = Schedule(kind="exponential", rate=0.1, every=100)


def lr_by_epoch(config: TrialConfig, epochs: list[int], steps_per_epoch: int = 1000) -> list:
    """Adam's learning rate in force at the first and last step of each of ``epochs``."""
    schedule = config.schedules.get("lr", Schedule())
    return [
        schedule.value(config.lr, step, steps_per_epoch, config.epochs)
        for e in epochs
        for step in (e * steps_per_epoch, (e + 1) * steps_per_epoch - 1)
    ]


@pytest.mark.parametrize("param", ["gamma", "sigma", "tau"])
def test_every_fig4_arm_decays_adam_s_lr_tenfold_every_100_epochs_as_the_reference(param):
    planned = expand(load_study_file(STUDIES / f"fig4_{param}.toml"))
    assert len(planned) == 6
    for p in planned:
        c = p.config
        assert c.schedules["lr"] == REFERENCE_LR_DECAY, p.label
        assert c.lr == 0.01 and c.epochs == 350 and c.batch_size == 50
        lrs = lr_by_epoch(c, [0, 99, 100, 199, 200, 299, 300, 349])
        expected = [0.01] * 4 + [1e-3] * 4 + [1e-4] * 4 + [1e-5] * 4
        assert lrs == pytest.approx(expected, rel=1e-12), p.label
    # the studied hyperparameter still follows its own arm's schedule
    directions = {p.label.split()[1]: p.config.schedules.get(param) for p in planned}
    assert directions["constant"] is None
    assert directions["increasing"] == Schedule(kind="exponential", rate=10, every=100)
    assert directions["decreasing"].rate == pytest.approx(0.1)


def test_adam_vs_bop_gives_every_arm_the_same_binary_weight_epochs_and_latent_arms_their_lr():
    planned = expand(load_study_file(STUDIES / "adam_vs_bop.toml"))
    binary_epochs = {p.config.epochs - (p.config.two_step or 0) for p in planned}
    assert binary_epochs == {150}
    latent = [p.config for p in planned if p.config.optimizer == "latent"]
    tuned = expand(load_study_file(STUDIES / "adam_lr.toml"))
    assert {c.lr for c in latent} == {1e-3} <= {p.config.lr for p in tuned}  # on adam_lr's grid
    recipe = [c for c in latent if c.two_step]
    assert recipe and all(c.weight_decay == 5e-6 and c.two_step == 150 for c in recipe)
    # adam_lr tunes each latent arm at adam_vs_bop's budget: the same arm at five lrs
    for c in latent:
        same = [p.config for p in tuned if replace(p.config, lr=c.lr, seed=c.seed) == c]
        assert len(same) == 5, c


def test_adambnn_runs_its_two_steps_of_equal_length_at_its_lr_and_batch():
    planned = expand(load_study_file(STUDIES / "adambnn.toml"))
    two_step = [p.config for p in planned if p.config.two_step]
    assert {(c.two_step, c.epochs, c.batch_size, c.lr) for c in two_step} == {
        (256, 512, 256, 1.25e-3)
    }
    assert all(c.schedules["lr"] == Schedule(kind="polynomial", end=0, power=1) for c in two_step)


@pytest.mark.parametrize("param", ["gamma", "sigma", "tau"])
def test_fig4_ships_both_readings_of_the_lr_and_they_differ_in_the_lr_alone(param):
    decayed = expand(load_study_file(STUDIES / f"fig4_{param}.toml"))
    constant = expand(load_study_file(STUDIES / f"fig4_{param}_lr_constant.toml"))
    assert [p.label for p in constant] == [p.label for p in decayed]
    for d, c in zip(decayed, constant, strict=True):
        assert "lr" not in c.config.schedules and c.config.lr == 0.01
        assert (
            replace(d.config, schedules={k: v for k, v in d.config.schedules.items() if k != "lr"})
            == c.config
        )
    text = (STUDIES / f"fig4_{param}.toml").read_text()
    assert "INFERENCE" in text  # the default reading says what it is


def test_schedule_study_with_lr_every_decays_lr_in_every_arm_and_not_without():
    base = TrialConfig(epochs=350, **PAPER)
    for kind in ("exponential", "polynomial"):
        with_decay = expand(schedule_study("s", base, "gamma", kind, lr_every=100))
        assert [p.config.schedules["lr"] for p in with_decay] == [REFERENCE_LR_DECAY] * 6
        assert all(set(p.config.schedules) <= {"gamma", "lr"} for p in with_decay)
        without = expand(schedule_study("s", base, "gamma", kind))
        assert not any("lr" in p.config.schedules for p in without)
    every_50 = expand(schedule_study("s", base, "tau", "exponential", lr_every=50))
    assert lr_by_epoch(every_50[0].config, [49, 50]) == pytest.approx([0.01, 0.01, 1e-3, 1e-3])


@pytest.mark.parametrize("every", [0, -100, float("nan"), float("inf")])
def test_lr_every_must_be_a_positive_number_of_epochs(every):
    with pytest.raises(UserError, match="--lr-every must be a number of epochs > 0"):
        schedule_study("s", TrialConfig(**PAPER), "tau", "exponential", lr_every=every)


def test_lr_every_refuses_a_base_whose_lr_is_already_scheduled():
    base = TrialConfig(schedules={"lr": Schedule(kind="polynomial", end=1e-3)}, **PAPER)
    with pytest.raises(UserError, match="already has an lr schedule"):
        schedule_study("s", base, "tau", "exponential", lr_every=100)


def test_a_study_holding_one_configuration_twice_is_refused():
    with pytest.raises(UserError, match="same configuration twice"):
        expand(grid_study("g", BASE, {"gamma": [1e-7, 1e-7]}))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[study]\nname = "x"\ncolour = "red"\n[grid]\ngamma = [1e-7]\n', "unknown key.*colour"),
        (
            '[study]\nname = "x"\n[base]\nepochs = "ten"\n[grid]\ngamma = [1e-7]\n',
            "epochs in \\[base\\].* must be an integer, got 'ten'",
        ),
        (
            '[study]\nname = "x"\n[base]\nlearning_rate = 0.1\n[grid]\ngamma = [1e-7]\n',
            "unknown key 'learning_rate'",
        ),
        ('[study]\nname = "x"\n[grid]\ngama = [1e-7]\n', "unknown key 'gama'"),
        ('[study]\nname = "x"\n[grid]\ngamma = []\n', "non-empty list"),
        (
            '[study]\nname = "x"\n[grid]\ngamma = ["big"]\n',
            "gamma in grid axis 'gamma' must be a number",
        ),
        ('[study]\nname = "x"\nkind = "magic"\n', "unknown study kind 'magic'"),
        ('[study]\nname = "x"\nkind = "arms"\n', "needs \\[\\[arms\\]\\]"),
        (
            '[study]\nname = "x"\nseeds = 0\n[grid]\ngamma = [1e-7]\n',
            "seeds must be an integer >= 1",
        ),
        ('[study]\nname = "bad name!"\n[grid]\ngamma = [1e-7]\n', "study name"),
        ('[study\nname = "x"\n', "cannot read study file"),
        ('[study]\nname = "x"\nkind = "pow10"\n[pow10]\ntau = "1e-8:2e-4"\n', "not a power of ten"),
        ('[study]\nname = "x"\n[grid]\ngamma = [2.0]\n', "gamma must be in \\(0, 1\\]"),
    ],
)
def test_bad_study_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        expand(load_study_file(write(tmp_path, text)))


@pytest.mark.parametrize(
    "text",
    ["a = " + "{a = " * 100_000 + "1" + "}" * 100_000, "a = " + "[" * 100_000 + "]" * 100_000],
    ids=["inline-tables", "arrays"],
)
def test_a_study_file_nested_too_deeply_is_one_error_not_a_recursion_error(tmp_path, text):
    with pytest.raises(UserError, match=r"cannot read study file .* nested too deeply"):
        load_study_file(write(tmp_path, text))


def test_a_missing_study_file_is_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_study_file(tmp_path / "nope.toml")


def test_spec_round_trips_through_plain_values():
    spec = load_study_file(STUDIES / "table1_paper.toml")
    again = spec_from_stored(spec.to_dict())
    assert [p.config_id for p in expand(again)] == [p.config_id for p in expand(spec)]


def test_a_grid_over_the_seed_runs_those_seeds():
    spec = grid_study("s", BASE, {"seed": [3, 7]}, seeds=2)
    assert sorted(p.config.seed for p in expand(spec)) == [3, 4, 7, 8]
