"""The store's record of attributes (bopsweep.attr_keys): every key declared with what it holds.

Real studies are held against it where they are made (``assert_attributes_on_record`` in the
search, seed-average and PostgreSQL tests); here, the record itself.
"""

from __future__ import annotations

import bopsweep.attr_keys as keys
from bopsweep.attr_keys import STUDY_RECORD, SYSTEM_RECORD, TRIAL_RECORD, off_record


def test_every_declared_key_says_what_it_holds():
    declared = {
        value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)
    }
    recorded = set(STUDY_RECORD) | set(TRIAL_RECORD) | set(SYSTEM_RECORD)
    assert declared == recorded


def test_a_value_of_another_type_or_an_undeclared_key_is_named():
    attrs = {
        keys.ATTEMPT: "2",
        keys.REQUEUED: 1,
        keys.EPOCHS_DONE: True,  # a bool is no int
        "colour": "red",
    }
    assert off_record(attrs, TRIAL_RECORD) == [
        "'attempt' holds str '2', not int",
        "'requeued' holds int 1, not bool",
        "'epochs_done' holds bool True, not int",
        "'colour' is not declared",
    ]
    assert off_record({"colour": "red"}, TRIAL_RECORD, every_key=False) == []


def test_what_the_record_allows_passes():
    attrs = {
        keys.SECONDS: 3,  # JSON keeps no 3.0: an int is a float
        keys.BEST_VAL_ACC: None,  # no binary-weight epoch yet
        keys.BEST_EPOCH: 4,
        keys.SEED_VALUES: [0.5, 0.6],
        keys.DELTA_ATTR: {"gamma": 1e-5},
    }
    assert off_record(attrs, TRIAL_RECORD) == []
    assert off_record({keys.SCHEMA_ATTR: 2, keys.LEGACY_ATTR: False}, STUDY_RECORD) == []
