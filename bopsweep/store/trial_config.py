"""A trial's configuration as a study stores it: the base configuration once, in the study, and
in each trial only what differs from it.

The study's user attribute ``bopsweep_spec`` holds its definition, whose ``base`` is the base
:class:`~bopsweep.studies.TrialConfig`. A trial stores, in its user attribute ``config_delta``,
the settings where its configuration differs from that base (``{"gamma": 1e-09, "seed": 1}``;
``{}`` at the base point). Storing the whole configuration in every trial, schedules included,
made Optuna's own tools (``optuna trials``, optuna-dashboard) unreadable.

:func:`trial_config` is the one place a trial's full configuration is rebuilt: the driver's
dispatch, resume and re-queue, the table and the figures all read it there. Trials stored by
bopsweep 0.1.0 hold the whole configuration in ``config``; it reads them too, as a difference
that lists every setting.

The settings that say where a trial runs, not what it computes (device, data path, download:
:data:`~bopsweep.trial.settings.LOCAL`), are the study's: never stored per trial, always
the base's. Every machine that runs a trial sets them anyway, and they are not part of a
configuration's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bopsweep.attr_keys import CONFIG_ID, DELTA_ATTR, FULL_ATTR, SPEC_ATTR
from bopsweep.errors import UserError
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.settings import LOCAL


class StoredConfigError(UserError):
    """A trial's stored configuration that cannot be read (another tool wrote it): that trial
    can never run, whatever is retried."""


def study_base(study_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The base configuration of a study (its user attributes), every setting present: a base
    stored before a setting existed reads with that setting's default, on write and read alike."""
    spec = study_attrs.get(SPEC_ATTR)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("base"), Mapping):
        raise UserError("the study's definition (bopsweep_spec) holds no base configuration")
    return _complete(spec["base"])


def config_attrs(config: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The user attributes that store ``config`` (a full configuration as plain values) in a
    trial of the study whose base is ``base`` (from :func:`study_base`)."""
    full = _complete(config)
    delta = {k: v for k, v in full.items() if k not in LOCAL and v != base.get(k)}
    return {DELTA_ATTR: delta}


def has_config(trial_attrs: Mapping[str, Any]) -> bool:
    """Whether a trial's user attributes hold its configuration (new or old style)."""
    return DELTA_ATTR in trial_attrs or FULL_ATTR in trial_attrs


def is_configured(trial_attrs: Mapping[str, Any]) -> bool:
    """Whether bopsweep gave a trial its configuration: its id and its settings."""
    return CONFIG_ID in trial_attrs and has_config(trial_attrs)


def trial_setting(trial_attrs: Mapping[str, Any], base: Mapping[str, Any], name: str) -> Any:
    """One setting of a trial's configuration, without rebuilding (and checking) all of it: for
    what is read often, like the live display's epochs to go. Not for local settings."""
    return _stored(trial_attrs).get(name, base[name])


def trial_config(trial_attrs: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's full configuration as plain values (:meth:`TrialConfig.to_dict` form): the
    study's ``base`` with the trial's stored difference over it (or, for a trial of bopsweep
    0.1.0, its stored configuration), the local settings always the base's."""
    own = {k: v for k, v in _stored(trial_attrs).items() if k not in LOCAL}
    return _complete({**base, **own}, trial_attrs)


def _stored(trial_attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a trial stores of its configuration: its delta, or (bopsweep 0.1.0) all of it;
    one line naming the trial if that is no mapping (another tool wrote it)."""
    stored = trial_attrs[DELTA_ATTR] if DELTA_ATTR in trial_attrs else trial_attrs[FULL_ATTR]
    if not isinstance(stored, Mapping):
        raise StoredConfigError(
            f"{_which(trial_attrs)}: its stored configuration is {type(stored).__name__} "
            f"{str(stored)[:40]!r}, not a mapping of settings"
        )
    return stored


def _which(trial_attrs: Mapping[str, Any]) -> str:
    """A trial named by what its attributes hold (a message needs no trial object)."""
    return f"the trial of configuration {trial_attrs.get(CONFIG_ID, '?')!s:.40}"


def _complete(config: Mapping[str, Any], trial_attrs: Mapping[str, Any] | None = None) -> dict:
    """Plain values with every setting of the current :class:`TrialConfig` (defaults filled),
    types checked as a study file's are."""
    if trial_attrs is None:
        return TrialConfig.from_dict(dict(config), "a stored configuration").to_dict()
    try:
        return TrialConfig.from_dict(dict(config), _which(trial_attrs)).to_dict()
    except UserError as e:
        raise StoredConfigError(str(e)) from None
