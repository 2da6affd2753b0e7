"""A trial's hyperparameters as TensorBoard's hparams plugin reads them: the values, their
types, and the plugin's experiment and session summaries."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, get_type_hints

from bopsweep.defaults import OPTIMIZER_DEFAULTS, variant_of
from bopsweep.studies.plan import FOLDED
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.schedules import SCHEDULABLE, Schedule
from bopsweep.trial.settings import LOCAL

# tensorboard and torch: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    pass

# metric row key → scalar tag; pi_LAYER and c2i_LAYER go to pi/LAYER and c2i/LAYER
BEST_TAG = "accuracy/val_best"
HPARAMS_METRICS = {"accuracy/val": "final val acc", BEST_TAG: "best val acc"}
STATUS = {"COMPLETE": "STATUS_SUCCESS", "FAIL": "STATUS_FAILURE", "PRUNED": "STATUS_UNKNOWN"}


# --- hyperparameters --------------------------------------------------------------------------
def trial_hparams(config: TrialConfig) -> dict[str, bool | float | str | None]:
    """A trial's hyperparameters for the HParams tab: its configuration, flattened.

    The optimizer and its bias correction as one ``variant`` (as in Optuna searches); γ, σ, τ
    with the optimizer's defaults filled in; each schedulable name's schedule as
    ``NAME_schedule`` (``constant``, or e.g. ``exponential(rate=0.1, every=100)``); every other
    field of :class:`~bopsweep.studies.TrialConfig` but where the trial ran (device, data
    folder). ``None``: not used by this trial (e.g. σ of Bop), left blank in TensorBoard. Every
    trial has the same names, so one experiment summary fits them all.
    """
    values: dict[str, Any] = {"variant": variant_of(config.optimizer, config.unbiased)}
    defaults = OPTIMIZER_DEFAULTS.get(config.optimizer, {})
    for f in fields(config):
        if f.name in _NOT_HPARAMS:
            continue
        value = getattr(config, f.name)
        values[f.name] = defaults.get(f.name) if value is None else value
    for name in SCHEDULABLE:
        values[f"{name}_schedule"] = _schedule_text(config.schedules.get(name))
    return values


def hparam_types() -> dict[str, str]:
    """Each name of :func:`trial_hparams` → the hparams plugin's data type (numbers are
    FLOAT64 there, integers included)."""
    hints = get_type_hints(TrialConfig)
    types = {"variant": "DATA_TYPE_STRING"}
    for f in fields(TrialConfig):
        if f.name not in _NOT_HPARAMS:
            hint = hints[f.name]
            types[f.name] = (
                "DATA_TYPE_BOOL"
                if hint is bool
                else "DATA_TYPE_STRING"
                if hint is str
                else "DATA_TYPE_FLOAT64"
            )
    types.update({f"{name}_schedule": "DATA_TYPE_STRING" for name in SCHEDULABLE})
    return types


# shown as ``variant`` and ``NAME_schedule``; where a trial ran is not a hyperparameter
_NOT_HPARAMS = (*FOLDED, "schedules", *LOCAL)


def _schedule_text(schedule: Any) -> str:
    """``constant``, or ``KIND(key=value, ...)`` with the keys that differ from the defaults."""
    if schedule is None:
        return "constant"
    default = asdict(Schedule())
    keys = [k for k, v in asdict(schedule).items() if k != "kind" and v != default[k]]
    shown = ", ".join(f"{k}={_number(getattr(schedule, k))}" for k in keys)
    return f"{schedule.kind}({shown})"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- the hparams plugin's summaries -----------------------------------------------------------
def hparams_summary(tag: str, **data: Any) -> Any:
    """One Summary of the hparams plugin: ``data`` is a field of ``HParamsPluginData``.

    Built from TensorBoard's protos directly rather than with
    ``torch.utils.tensorboard.summary.hparams``, which types booleans as numbers and always
    ends a session as a success.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def experiment_summary() -> Any:
    from tensorboard.plugins.hparams import api_pb2, metadata

    infos = [
        api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(kind))
        for name, kind in hparam_types().items()
    ]
    metrics = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag),
            display_name=name,
            dataset_type=api_pb2.DatasetType.DATASET_VALIDATION,
        )
        for tag, name in HPARAMS_METRICS.items()
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def session_start_summary(hparams: dict[str, Any], walltime: float) -> Any:
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

    start = SessionStartInfo(start_time_secs=walltime)
    for name, value in hparams.items():
        if value is None:
            continue
        if isinstance(value, bool):  # before numbers: a bool is an int
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    return hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)


def session_end_summary(state: str, walltime: float) -> Any:
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

    status = api_pb2.Status.Value(STATUS[state])
    end = SessionEndInfo(status=status, end_time_secs=walltime)
    return hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end)
