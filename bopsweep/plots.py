"""The paper's figures from any study: ablation, summary, schedule, comparison, π_t, Optuna.

Every figure function takes a :class:`StudyData` (trials and metrics read back through pandas)
and returns a matplotlib figure, so tests can check the data drawn; :func:`draw_study` writes
every figure that fits a study and returns what it wrote. A study still running is drawn as far
as it has got. Matplotlib runs on the Agg backend: no display needed.

Conventions: accuracy in %, validation solid and training dashed; π_t (natural log of the
flip fraction plus e⁻⁹) against the optimizer step; one colour per configuration, the same in
every figure of a study; several seeds of a configuration are drawn as their mean and a band
from their minimum to their maximum.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.errors import UserError
from bopsweep.files import atomic_open, atomic_write_text

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

    from bopsweep.store import Store

SYMBOLS = {"gamma": "γ", "sigma": "σ", "tau": "τ", "lr": "Adam lr"}
FORMATS = ("png", "pdf", "svg")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3")


@dataclass
class Run:
    """One configuration's curves: its most complete trial (retries carry the whole curve)."""

    number: int
    label: str
    config: dict[str, Any]
    state: str
    epochs: pd.DataFrame
    steps: pd.DataFrame

    @property
    def point(self) -> str:
        """The configuration without its seed: seeds of one point are drawn together."""
        return json.dumps({k: v for k, v in self.config.items() if k != "seed"}, sort_keys=True)


@dataclass
class StudyData:
    name: str
    spec: dict[str, Any]
    runs: list[Run]
    study: Any = None  # the optuna.Study, for Optuna's own plots
    colours: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec["kind"]


def load_study_data(store: Store, study: optuna.Study) -> StudyData:
    from bopsweep.store import SPEC_ATTR

    epochs = store.epochs_frame(study)
    steps = store.steps_frame(study)
    by_config: dict[str, Any] = {}
    counts = epochs.groupby("trial_id").size().to_dict() if not epochs.empty else {}
    for t in study.get_trials(deepcopy=False):
        cid = t.user_attrs.get("config_id")
        if cid is None or "config" not in t.user_attrs:  # never configured (a crash): no curve
            continue
        key = (counts.get(t._trial_id, 0), t.number)
        if cid not in by_config or key > by_config[cid][0]:
            by_config[cid] = (key, t)
    runs = []
    for (n_epochs, _), t in sorted(by_config.values(), key=lambda kt: kt[1].number):
        if n_epochs == 0:
            continue
        runs.append(
            Run(
                number=t.number,
                label=t.user_attrs.get("label") or t.user_attrs["config_id"],
                config=t.user_attrs["config"],
                state=t.state.name,
                epochs=epochs[epochs["trial_id"] == t._trial_id].reset_index(drop=True),
                steps=(
                    steps[steps["trial_id"] == t._trial_id].reset_index(drop=True)
                    if not steps.empty
                    else steps
                ),
            )
        )
    return StudyData(study.study_name, study.user_attrs[SPEC_ATTR], runs, study)


# --- helpers ------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return (
        f"{value:.0e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e3) else f"{value:g}"
    )


def swept_params(data: StudyData) -> list[str]:
    """The numeric settings a grid or pow10 study varies."""
    if data.kind not in ("grid", "pow10"):
        return []
    return [
        p
        for p, values in data.spec["grid"].items()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


def fixed_description(data: StudyData, exclude: set[str]) -> str:
    """The study's fixed settings for a title: variant, hyperparameters, norm, batch, epochs."""
    base = data.spec["base"]
    varying = set(data.spec["grid"]) | exclude | {k for a in data.spec["arms"] for k in a}
    if data.kind == "optuna":  # the search space's dimensions are not fixed
        varying |= {"optimizer", "unbiased", "norm", "gamma", "sigma", "tau"}
    parts = []
    if not {"optimizer", "unbiased"} & varying:
        opt = base["optimizer"]
        parts.append(
            {"bop": "Bop", "latent": "latent weights"}.get(
                opt, "Bop2ndOrder " + ("unbiased" if base["unbiased"] else "biased")
            )
        )
    for name in ("gamma", "sigma", "tau"):
        if name not in varying and base.get(name) is not None:
            parts.append(f"{SYMBOLS[name]}={fmt_value(base[name])}")
    if "norm" not in varying:
        parts.append(f"{base['norm']} norm")
    parts.append(f"batch {base['batch_size']}, {base['epochs']} epochs, width {base['width']:g}")
    return ", ".join(parts)


def assign_colours(
    data: StudyData, keys: list[str], numeric: dict[str, float] | None = None
) -> dict:
    """Colours for ``keys``, stable within a study (each key keeps its colour across figures)."""
    plt = _plt()
    new = [k for k in keys if k not in data.colours]
    if numeric:  # ordered values: a sequential map by rank
        ordered = sorted(new, key=lambda k: numeric.get(k, math.inf))
        cmap = plt.get_cmap("viridis")
        for i, k in enumerate(ordered):
            data.colours[k] = cmap(0.9 * i / max(1, len(ordered) - 1))
    elif len(data.colours) + len(new) <= 10:
        cmap = plt.get_cmap("tab10")
        for k in new:
            data.colours[k] = cmap(len(data.colours))
    else:  # more than ten: spread over a sequential map rather than repeat colours
        cmap = plt.get_cmap("turbo")
        for i, k in enumerate(new):
            data.colours[k] = cmap(0.05 + 0.9 * i / max(1, len(new) - 1))
    return {k: data.colours[k] for k in keys}


def _seed_band(runs: list[Run], x: str, y: str, source: str = "epochs") -> pd.DataFrame:
    """Mean, min and max of ``y`` over the runs (seeds), by ``x``."""
    import pandas as pd

    frames = [getattr(r, source)[[x, y]] for r in runs if not getattr(r, source).empty]
    if not frames:
        return pd.DataFrame(columns=[x, "mean", "min", "max"])
    joined = pd.concat(frames).groupby(x)[y]
    return pd.DataFrame(
        {"mean": joined.mean(), "min": joined.min(), "max": joined.max()}
    ).reset_index()


def _draw_band(
    ax: Any,
    band: pd.DataFrame,
    x: str,
    colour: Any,
    label: str | None,
    style: str = "-",
    scale: float = 1.0,
) -> None:
    ax.plot(band[x], band["mean"] * scale, style, color=colour, label=label, linewidth=1.4)
    if (band["max"] > band["min"]).any():
        ax.fill_between(
            band[x], band["min"] * scale, band["max"] * scale, color=colour, alpha=0.18, linewidth=0
        )


def _groups(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[r.point].append(r)
    return groups


def _seeds_note(groups: dict[str, list[Run]]) -> str:
    n = max((len(g) for g in groups.values()), default=1)
    return f" — mean of {n} seeds, band: min–max" if n > 1 else ""


def _accuracy_axes(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)


def _pi_axes(ax: Any, secondary: bool = True) -> None:
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("π_t = ln(flip fraction + e⁻⁹)")
    ax.set_ylim(-9.3, 0.3)
    ax.grid(alpha=0.3)
    if secondary:  # read π as a flip fraction on the right
        sec = ax.secondary_yaxis(
            "right",
            functions=(lambda p: _np().exp(p), lambda f: _np().log(_np().clip(f, 1e-12, None))),
        )
        sec.set_ylabel("flip fraction (log scale)")
        sec.set_yscale("log")


def _np() -> Any:
    import numpy as np

    return np


MAX_LEGEND = 12


def _legend(ax: Any, title: str | None = None) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > MAX_LEGEND:  # unreadable as a legend: the other figures name the values
        ax.text(
            0.99,
            0.98,
            f"{len(handles)} configurations (no legend)",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    elif handles:
        ax.legend(
            title=title,
            fontsize=8,
            title_fontsize=8,
            ncol=1 if len(handles) < 8 else 2,
            loc="best",
            frameon=False,
        )


# --- figures ------------------------------------------------------------------------------------
def _held(data: StudyData, param: str) -> dict[str, Any]:
    """The other grid axes of a one-factor view: at the base point, or their first value."""
    base = data.spec["base"]
    return {
        axis: base.get(axis) if base.get(axis) in values else values[0]
        for axis, values in data.spec["grid"].items()
        if axis != param
    }


def _held_note(data: StudyData, param: str) -> str:
    held = _held(data, param)
    return (
        "; held: " + ", ".join(f"{SYMBOLS.get(k, k)}={fmt_value(v)}" for k, v in held.items())
        if held
        else ""
    )


def _points_along(data: StudyData, param: str) -> dict[Any, list[Run]]:
    """Runs of a one-factor ablation of ``param``: the other grid axes held at the base point
    (or, where the base is not on an axis, its first value); grouped by the value of ``param``."""
    held = _held(data, param)
    by_value: dict[Any, list[Run]] = defaultdict(list)
    for r in data.runs:
        if all(r.config.get(k) == v for k, v in held.items()):
            by_value[r.config[param]].append(r)
    return dict(sorted(by_value.items()))


def _variant(config: dict[str, Any]) -> str:
    if config["optimizer"] == "bop2":
        return "Bop2ndOrder " + ("unbiased" if config["unbiased"] else "biased")
    return {"bop": "Bop", "latent": "latent weights"}[config["optimizer"]]


def ablation_figure(data: StudyData, param: str) -> Figure:
    """Fig. 3: accuracy against epoch per value of ``param`` (validation solid, training dashed)
    and, below, π_t against step for the same values."""
    plt = _plt()
    by_value = _points_along(data, param)
    keys = {v: f"{param}={fmt_value(v)}" for v in by_value}
    colours = assign_colours(data, list(keys.values()), {keys[v]: v for v in by_value})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 8), constrained_layout=True)
    seeds = ""
    for value, runs in by_value.items():
        colour, label = colours[keys[value]], f"{SYMBOLS.get(param, param)} = {fmt_value(value)}"
        seeds = _seeds_note({str(value): runs}) or seeds
        _draw_band(top, _seed_band(runs, "epoch", "val_acc"), "epoch", colour, label, "-", 100)
        _draw_band(top, _seed_band(runs, "epoch", "train_acc"), "epoch", colour, None, "--", 100)
        band = _seed_band(runs, "step", "pi", "steps")
        if not band.empty:
            _draw_band(bottom, band, "step", colour, label)
    _accuracy_axes(top)
    top.set_title("validation (solid) and training (dashed) accuracy" + seeds, fontsize=9)
    _legend(top)
    _pi_axes(bottom)
    bottom.set_title("flip metric π_t (network-wide)", fontsize=9)
    fig.suptitle(
        f"{data.name}: ablation of {SYMBOLS.get(param, param)}\n"
        f"{fixed_description(data, {param})}{_held_note(data, param)}",
        fontsize=10,
    )
    return fig


def summary_figure(data: StudyData, param: str) -> Figure:
    """Final (solid) and best (dotted) validation accuracy against ``param`` on a log axis,
    error bars over seeds (min–max); one line per optimizer variant."""
    plt = _plt()
    by_value = _points_along(data, param)
    lines: dict[str, dict[str, list[tuple[float, list[float], list[float]]]]] = defaultdict(
        lambda: {"pts": []}
    )
    for value, runs in by_value.items():
        per_variant: dict[str, list[Run]] = defaultdict(list)
        for r in runs:
            per_variant[_variant(r.config)].append(r)
        for variant, vruns in per_variant.items():
            finals = [100 * r.epochs["val_acc"].iloc[-1] for r in vruns]
            bests = [100 * r.epochs["val_acc"].max() for r in vruns]
            lines[variant]["pts"].append((value, finals, bests))
    colours = assign_colours(data, list(lines))
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for variant, line in lines.items():
        xs = [p[0] for p in line["pts"]]
        for idx, style, what in ((1, "-o", "final"), (2, ":s", "best")):
            ys = [sum(p[idx]) / len(p[idx]) for p in line["pts"]]
            err = [
                [y - min(p[idx]) for y, p in zip(ys, line["pts"])],
                [max(p[idx]) - y for y, p in zip(ys, line["pts"])],
            ]
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt=style,
                color=colours[variant],
                capsize=3,
                label=f"{variant}, {what}",
                markersize=4,
            )
    if all(isinstance(v, (int, float)) and v > 0 for v in by_value):
        ax.set_xscale("log")
    ax.set_xlabel(f"{SYMBOLS.get(param, param)} ({param})")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    _legend(ax)
    ax.set_title(
        f"{data.name}: final and best validation accuracy against "
        f"{SYMBOLS.get(param, param)}\n{fixed_description(data, {param})}"
        + _held_note(data, param)
        + (
            "; error bars: min–max over seeds"
            if any(len(p[1]) > 1 for line in lines.values() for p in line["pts"])
            else ""
        ),
        fontsize=9,
    )
    return fig


def comparison_figure(data: StudyData, runs: list[Run] | None = None, title: str = "") -> Figure:
    """Fig. 5/6: training (dashed) and validation (solid) accuracy against epoch per arm."""
    plt = _plt()
    groups = _groups(runs if runs is not None else data.runs)
    labels = {k: _arm_label(g[0]) for k, g in groups.items()}
    colours = assign_colours(data, list(labels.values()))
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    for key, group in groups.items():
        colour = colours[labels[key]]
        _draw_band(
            ax, _seed_band(group, "epoch", "val_acc"), "epoch", colour, labels[key], "-", 100
        )
        _draw_band(ax, _seed_band(group, "epoch", "train_acc"), "epoch", colour, None, "--", 100)
    _accuracy_axes(ax)
    _legend(ax)
    ax.set_title(
        title
        or f"{data.name}: validation (solid) and training (dashed) accuracy"
        f"{_seeds_note(groups)}\n{fixed_description(data, set())}",
        fontsize=9,
    )
    return fig


def _arm_label(run: Run) -> str:
    label = run.label
    seed = run.config.get("seed")
    return label.rsplit(" seed=", 1)[0] if seed is not None else label


def schedule_figure(data: StudyData) -> Figure:
    """Fig. 4: the increasing, decreasing and constant arms' accuracy, and a small panel of the
    scheduled hyperparameter's value against epoch."""
    plt = _plt()
    param = data.spec["meta"]["schedule_param"]
    groups = _groups(data.runs)
    labels = {k: _arm_label(g[0]) for k, g in groups.items()}
    # colour by direction, line style by variant (solid unbiased, dash-dot biased), as Fig. 4
    colours = dict(zip(("constant", "increasing", "decreasing"), ("0.35", "tab:red", "tab:blue")))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 7.5), constrained_layout=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for key, group in groups.items():
        label = labels[key]
        colour = colours.get(label.rsplit(" ", 1)[-1], "tab:green")
        style = "-" if "unbiased" in label else "-."
        _draw_band(top, _seed_band(group, "epoch", "val_acc"), "epoch", colour, label, style, 100)
        values = group[0].epochs[["epoch", param]]
        bottom.plot(values["epoch"], values[param], style, color=colour, label=label)
    _accuracy_axes(top)
    top.set_title(f"validation accuracy{_seeds_note(groups)}", fontsize=9)
    _legend(top)
    bottom.set_yscale("log")
    bottom.set_xlabel("epoch")
    bottom.set_ylabel(f"{SYMBOLS[param]} in force")
    bottom.grid(alpha=0.3)
    meta = data.spec["meta"]
    factor = fmt_value(meta["factor"])
    if meta["schedule_kind"] == "exponential":
        how = f"×{factor} or ÷{factor} every {fmt_value(meta['every'])} epochs"
    else:
        how = f"polynomial to ×{factor} or ÷{factor}"
    fig.suptitle(
        f"{data.name}: {SYMBOLS[param]} scheduled ({how}) against constant\n"
        f"{fixed_description(data, {param, 'unbiased'})}",
        fontsize=10,
    )
    return fig


def pi_figure(data: StudyData, layers: list[str] | None = None) -> Figure:
    """π_t against step, network-wide and for each of ``layers``; the right axis reads π as
    the flip fraction."""
    plt = _plt()
    panels = ["network", *(layers or [])]
    groups = _groups(data.runs)
    labels = {k: _arm_label(g[0]) for k, g in groups.items()}
    colours = assign_colours(data, list(labels.values()))
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7.5, 3.2 * len(panels)), squeeze=False, constrained_layout=True
    )
    for ax, panel in zip(axes[:, 0], panels):
        column = "pi" if panel == "network" else f"pi_{panel}"
        for key, group in groups.items():
            band = _seed_band(group, "step", column, "steps")
            if not band.empty:
                _draw_band(ax, band, "step", colours[labels[key]], labels[key])
        _pi_axes(ax)
        ax.set_title("network-wide" if panel == "network" else f"layer {panel}", fontsize=9)
    _legend(axes[0, 0])
    fig.suptitle(
        f"{data.name}: flip metric π_t{_seeds_note(groups)}\n{fixed_description(data, set())}",
        fontsize=10,
    )
    return fig


def optuna_figures(data: StudyData) -> dict[str, Figure]:
    """Optuna's own history, importance and parallel-coordinate plots (matplotlib backend).

    They are marked experimental in Optuna; that warning is silenced on purpose, since the
    figures are used as they are.
    """
    import optuna
    import optuna.visualization.matplotlib as ovm

    complete = data.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures: dict[str, Figure] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if complete:
            figures["optuna_history"] = ovm.plot_optimization_history(data.study).figure
            figures["optuna_parallel"] = ovm.plot_parallel_coordinate(
                data.study,
                params=[
                    p
                    for p in ("gamma", "sigma", "tau", "variant", "norm")
                    if any(p in t.params for t in complete)
                ],
            ).figure
        if len(complete) >= 2:
            # too few distinct trials give no importance estimate: then there is no such figure
            with contextlib.suppress(ValueError, RuntimeError):
                figures["optuna_importances"] = ovm.plot_param_importances(data.study).figure
    for name, fig in figures.items():  # our title in place of Optuna's, with the settings
        fig.set_size_inches(9, 5.5)
        fig.axes[0].set_title(
            f"{data.name}: {name.split('_')[1]} (Optuna)\n{fixed_description(data, set())}",
            fontsize=10,
        )
        fig.tight_layout()
    return figures


# --- all figures of a study -------------------------------------------------------------------
@dataclass
class Written:
    path: Path
    description: str


def draw_study(
    data: StudyData,
    out: Path,
    fmt: str = "png",
    params: list[str] | None = None,
    layers: list[str] | None = None,
) -> list[Written]:
    """Every figure that fits ``data``, written to ``out``; what was written."""
    plt = _plt()
    figures: list[tuple[str, Figure, str]] = []
    swept = swept_params(data)
    for param in params or []:
        if param not in swept:
            raise UserError(
                f"--param {param!r} is not swept in study {data.name}"
                + (f"; it sweeps {', '.join(swept)}" if swept else "")
            )
    if data.runs:
        for param in params or swept:
            figures.append(
                (
                    f"ablation_{param}",
                    ablation_figure(data, param),
                    f"accuracy and π_t per value of {param} (Fig. 3)",
                )
            )
            figures.append(
                (
                    f"summary_{param}",
                    summary_figure(data, param),
                    f"final and best validation accuracy against {param}",
                )
            )
        if data.kind == "schedule":
            param = data.spec["meta"]["schedule_param"]
            what = f"{param} scheduled up, down and constant (Fig. 4)"
            figures.append(("schedule", schedule_figure(data), what))
        if data.kind in ("arms", "schedule") or (data.kind == "grid" and not swept):
            what = "training and validation accuracy per configuration (Fig. 5/6)"
            figures.append(("comparison", comparison_figure(data), what))
        what = "flip metric π_t per step" + (f", layers {', '.join(layers)}" if layers else "")
        figures.append(("pi", pi_figure(data, layers), what))
    if data.kind == "optuna":
        for name, fig in optuna_figures(data).items():
            figures.append((name, fig, name.replace("optuna_", "Optuna's ") + " plot"))
    folder = out / data.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror}") from None
    written = []
    for name, fig, description in figures:
        path = folder / f"{name}.{fmt}"
        try:
            with atomic_open(path, "wb") as f:  # never half a figure, whatever interrupts it
                fig.savefig(f, dpi=150, format=fmt)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror}") from None
        finally:
            plt.close(fig)
        written.append(Written(path, description))
    return written


def write_index(out: Path, entries: dict[str, list[Written]], command: str) -> Path:
    """``out/index.md``: one line per figure, and the command that draws them again."""
    lines = ["# bopsweep figures", "", f"Drawn again by: `{command}`", ""]
    for study, written in entries.items():
        lines.append(f"## {study}")
        lines.append("")
        if not written:
            lines.append("- (no finished epoch yet)")
        for w in written:
            lines.append(f"- [{w.path.name}]({w.path.relative_to(out)}): {w.description}")
        lines.append("")
    path = out / "index.md"
    try:
        atomic_write_text(path, "\n".join(lines))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    return path


def parse_layers(text: str | None) -> list[str]:
    """``--layer``: ``last`` (fc3, the Bop paper's figure), ``all``, or names like conv1,fc3."""
    if not text:
        return []
    if text == "last":
        return ["fc3"]
    if text == "all":
        return list(LAYERS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in LAYERS:
            raise UserError(
                f"unknown layer {n!r}; use last, all, or names from {', '.join(LAYERS)}"
            )
    return names
