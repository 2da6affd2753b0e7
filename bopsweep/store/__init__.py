"""Where studies live: Optuna's storage and bopsweep's metric tables, in one database.

* :mod:`~bopsweep.store.urls`: which database a command uses; passwords kept out of output;
* :mod:`~bopsweep.store.database`: :class:`Store`, an open database (read-only for commands
  that only read);
* :mod:`~bopsweep.store.metrics`: the per-epoch and per-step metric tables;
* :mod:`~bopsweep.store.schema`: the store schema's version and its numbered upgrades (the
  keys it stores: :mod:`bopsweep.attr_keys`, :mod:`bopsweep.metric_keys`);
* :mod:`~bopsweep.store.lock`: one driver per SQLite file;
* :mod:`~bopsweep.store.optuna_adapter`: the one module that uses Optuna's private attributes.
"""

from bopsweep.attr_keys import LEGACY_ATTR, SPEC_ATTR, UUID_ATTR
from bopsweep.store.database import NoStudyTables, Store, study_uuid
from bopsweep.store.lock import driver_lock
from bopsweep.store.urls import (
    checkpoint_base,
    database_file,
    redact,
    scrub,
    sqlite_path,
    storage_url,
)

__all__ = [
    "LEGACY_ATTR",
    "SPEC_ATTR",
    "UUID_ATTR",
    "NoStudyTables",
    "Store",
    "checkpoint_base",
    "database_file",
    "driver_lock",
    "redact",
    "scrub",
    "sqlite_path",
    "storage_url",
    "study_uuid",
]
