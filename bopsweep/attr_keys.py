"""Every attribute key bopsweep writes on a study or a trial, declared once.

The database is bopsweep's contract with itself across versions and with other tools (Optuna's
CLI, optuna-dashboard, a reader of the file): a key spelled differently in two modules would be
two attributes. Code that reads or writes an attribute names it here; the values are the keys
as stored, unchanged since they were first written (studies of earlier versions read as
before). What a study's keys mean at each version is :mod:`bopsweep.store.schema`'s.

What each holds is declared below (the record); no imports: the trial process, the driver
and the store all use it.
"""

from __future__ import annotations

# --- study user attributes ----------------------------------------------------------------------
SPEC_ATTR = "bopsweep_spec"  # the study's definition (StudySpec.to_dict): what resume runs
# the study's identity (a UUID made with it): its trial folders are keyed by it, never by a name
UUID_ATTR = "bopsweep_study_uuid"
# set on a study of bopsweep 0.1 as it gets its identity: its trial folders still sit in
# ROOT/NAME, which the next run moves under its identity (bopsweep.folders.open_study_folder)
LEGACY_ATTR = "bopsweep_legacy_folder"
C2I_ATTR = "bopsweep_c2i"  # its rows' c2i is the share of signs kept (0.2.0's schema mark)
SCHEMA_ATTR = "bopsweep_schema"  # the store schema's version (bopsweep.store.schema)
COMPANION_OF = "bopsweep_companion_of"  # on a companion study: the UUID of the study it serves

# --- trial user attributes: what the trial is ---------------------------------------------------
CONFIG_ID = "config_id"  # the configuration's id (bopsweep.studies.config_id)
LABEL = "label"  # what it changes, for people
DELTA_ATTR = "config_delta"  # its settings that differ from the study's base
FULL_ATTR = "config"  # bopsweep 0.1.0: the whole configuration in every trial
ATTEMPT = "attempt"  # retries used so far
SEED_OF = "seed_of"  # on a seed run: its configuration's trial number in the companion study
SEED_INDEX = "seed_index"  # on a seed run: 0 … K-1 (its seed is the configuration's + this)
SEEDS = "seeds"  # on a configuration's trial of a companion study: K

# --- trial user attributes: how it ended ---------------------------------------------------------
EPOCHS_DONE = "epochs_done"
RESUMED_FROM = "resumed_from_epoch"
RUN_DIR = "run_dir"
SLOT = "slot"  # the GPU slot that ran it
FAILURE = "failure"  # a word: crash, oom, diverged, error, busy, interrupted, incomplete, …
FAIL_REASON = "fail_reason"  # one line
REQUEUED = "requeued"  # whether a retry was queued
PRUNED_AT = "pruned_at_epoch"
# best_*: binary-weight epochs only; step1_best_*: a two-step run's real-kernel step 1
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
STEP1_BEST_VAL_ACC = "step1_best_val_acc"
STEP1_BEST_EPOCH = "step1_best_epoch"
BEST_KEYS = (BEST_VAL_ACC, BEST_EPOCH, STEP1_BEST_VAL_ACC, STEP1_BEST_EPOCH)
FINAL_TRAIN_ACC = "final_train_acc"
SECONDS = "seconds"
SUMMARY_ATTRS = (*BEST_KEYS, FINAL_TRAIN_ACC, SECONDS)  # a finished run's summary, as stored
# on a configuration's trial of a companion study
SEED_VALUES = "seed_values"
SEED_STD = "seed_std"
SEED_RUNS = "seed_runs"
PROVENANCE = "provenance"  # its code, software, machine and data (bopsweep.trial.provenance)
PROVENANCE_FIELDS = ("bopsweep", "commit", "dirty", "python", "torch", "cuda", "cudnn", "host",
                     "gpu", "data")  # fmt: skip  # data: the fingerprint of the data it read

# --- trial system attributes ----------------------------------------------------------------------
OWNER_ATTR = "bopsweep_owner"  # the token of the driver that may write it (store.fencing)
FAILED_TRIAL = "failed_trial"  # Optuna's: the trial a retry retries

# --- the record: what each attribute holds --------------------------------------------------
# The JSON types of each value as bopsweep writes it (int: never a bool; float: an int too, as
# JSON does not tell 1.0 from 1; None where the value may be missing). A key bopsweep writes
# is declared here or a test fails; so is a value of another type (tests/test_attr_record.py).
NONE = type(None)
STUDY_RECORD: dict[str, tuple[type, ...]] = {
    SPEC_ATTR: (dict,),
    UUID_ATTR: (str,),
    LEGACY_ATTR: (bool,),
    C2I_ATTR: (str,),
    SCHEMA_ATTR: (int,),
    COMPANION_OF: (str,),
}
TRIAL_RECORD: dict[str, tuple[type, ...]] = {
    CONFIG_ID: (str,),
    LABEL: (str,),
    DELTA_ATTR: (dict,),
    FULL_ATTR: (dict,),
    ATTEMPT: (int,),
    SEED_OF: (int,),
    SEED_INDEX: (int,),
    SEEDS: (int,),
    EPOCHS_DONE: (int,),
    RESUMED_FROM: (int, NONE),
    RUN_DIR: (str,),
    SLOT: (str,),
    FAILURE: (str,),
    FAIL_REASON: (str,),
    REQUEUED: (bool,),
    PRUNED_AT: (int,),
    BEST_VAL_ACC: (float, NONE),
    BEST_EPOCH: (int, NONE),
    STEP1_BEST_VAL_ACC: (float, NONE),
    STEP1_BEST_EPOCH: (int, NONE),
    FINAL_TRAIN_ACC: (float, NONE),
    SECONDS: (float,),
    SEED_VALUES: (list,),
    SEED_STD: (float,),
    SEED_RUNS: (list,),
    PROVENANCE: (dict,),
}
# a trial's system attributes that bopsweep writes (Optuna writes others of its own)
SYSTEM_RECORD: dict[str, tuple[type, ...]] = {OWNER_ATTR: (str,), FAILED_TRIAL: (int,)}


def holds(value: object, types: tuple[type, ...]) -> bool:
    """Whether ``value`` is of one of the record's ``types`` (a bool is no int, an int is a
    float)."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (isinstance(value, int) and float in types)


def off_record(
    attrs: dict[str, object], record: dict[str, tuple[type, ...]], every_key: bool = True
) -> list[str]:
    """What in ``attrs`` the record does not declare (``every_key``: an undeclared key too),
    one line each; empty when all of it is as declared."""
    lines = []
    for key, value in attrs.items():
        if key not in record:
            if every_key:
                lines.append(f"{key!r} is not declared")
        elif not holds(value, record[key]):
            names = " or ".join(t.__name__ for t in record[key])
            lines.append(f"{key!r} holds {type(value).__name__} {value!r}, not {names}")
    return lines
