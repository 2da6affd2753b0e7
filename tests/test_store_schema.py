"""The store schema's version: a study made now carries the current one; an older study is
brought up to it by the first writing command, one upgrade per transaction, and read right
without a write by read-only ones; a study of a newer bopsweep is refused by writing commands.
On SQLite, and on PostgreSQL where its test server runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import bopsweep
import bopsweep.store.schema as schema
from bopsweep.attr_keys import C2I_ATTR, SCHEMA_ATTR
from bopsweep.store import Store
from bopsweep.store.c2i_upgrade import to_schema_1
from bopsweep.store.schema import UPGRADES, NewerSchema, Upgrade, current_version
from bopsweep.store.urls import engine_url
from bopsweep.studies import TrialConfig, grid_study
from tests.helpers import KEPT, LAYER, digest, invoke, old_study, one_line_error
from tests.helpers import bopsweep as run_bopsweep

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("pg")


def stored(url: str) -> tuple[dict, list[dict]]:
    """Study "g"'s user attributes and its epoch rows' data, as the database holds them."""
    engine = sa.create_engine(engine_url(url))
    with engine.connect() as conn:
        attrs = dict(
            conn.execute(
                sa.text(
                    "SELECT a.key, a.value_json FROM study_user_attributes a "
                    "JOIN studies s ON s.study_id = a.study_id WHERE s.study_name = 'g'"
                )
            ).all()
        )
        rows = conn.execute(sa.text("SELECT data FROM bopsweep_epochs ORDER BY epoch")).scalars()
        data = [json.loads(r) for r in rows]
    engine.dispose()
    return {k: json.loads(v) for k, v in attrs.items()}, data


def execute(url: str, sql: str, **params: object) -> None:
    engine = sa.create_engine(engine_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    engine.dispose()


def set_version(url: str, value: object) -> None:
    sql = "UPDATE study_user_attributes SET value_json = :v WHERE key = :k"
    execute(url, sql, v=json.dumps(value), k=SCHEMA_ATTR)


def join(url: str) -> None:
    store = Store(url)
    try:
        store.join("g")
    finally:
        store.engine.dispose()


def c2i(rows: list[dict]) -> list[float]:
    return [r["c2i"] for r in rows]


def test_upgrades_are_numbered_from_1_without_a_gap():
    assert [u.version for u in UPGRADES] == list(range(1, len(UPGRADES) + 1))
    assert current_version() == UPGRADES[-1].version


def test_a_study_made_now_has_the_current_schema_version(url):
    store = Store(url, create=True)
    study, _ = store.create(grid_study("g", TrialConfig(), {"gamma": [1e-7]}))
    store.engine.dispose()
    assert study.user_attrs[SCHEMA_ATTR] == current_version()
    assert study.user_attrs[C2I_ATTR] == "kept"  # what bopsweep 0.2.0 reads as version 1
    join(url)  # a writer finds nothing to upgrade
    attrs, _ = stored(url)
    assert attrs[SCHEMA_ATTR] == current_version()


def test_a_study_of_0_2_0_counts_as_version_1_and_gets_its_version_written(url):
    old_study(url)  # C2I mark and version both removed …
    join(url)
    _, rows = stored(url)
    # … then the version alone: as 0.2.0 left a study it converted
    execute(url, "DELETE FROM study_user_attributes WHERE key = :k", k=SCHEMA_ATTR)
    join(url)
    again, rows_again = stored(url)
    assert again[SCHEMA_ATTR] == 1 and rows_again == rows  # not converted a second time


def test_a_study_of_0_1_is_upgraded_by_a_writer_each_upgrade_in_one_transaction(url, monkeypatch):
    old_study(url)
    before = stored(url)
    assert SCHEMA_ATTR not in before[0] and C2I_ATTR not in before[0]

    def half_then_killed(conn, epochs, study_id):
        to_schema_1(conn, epochs, study_id)  # every row rewritten, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(schema, "UPGRADES", (Upgrade(1, "upgrade 1", half_then_killed),))
    with pytest.raises(KeyboardInterrupt):
        join(url)
    assert stored(url) == before  # nothing of it committed: still version 0, rows as 0.1's

    def fails(conn, epochs, study_id):
        raise KeyboardInterrupt

    applied = []

    def upgrade_2(conn, epochs, study_id):
        conn.execute(sa.text("SELECT 1"))
        applied.append(study_id)

    monkeypatch.setattr(schema, "UPGRADES", (UPGRADES[0], Upgrade(2, "upgrade 2", fails)))
    with pytest.raises(KeyboardInterrupt):  # killed between upgrade 1 and upgrade 2
        join(url)
    attrs, rows = stored(url)
    assert attrs[SCHEMA_ATTR] == 1 and attrs[C2I_ATTR] == "kept"  # upgrade 1, whole
    assert c2i(rows) == pytest.approx([KEPT[1], KEPT[2]])
    monkeypatch.setattr(schema, "UPGRADES", (UPGRADES[0], Upgrade(2, "upgrade 2", upgrade_2)))
    join(url)  # goes on from version 1: upgrade 1 never applied twice
    attrs, rows = stored(url)
    assert attrs[SCHEMA_ATTR] == 2 and len(applied) == 1
    assert c2i(rows) == pytest.approx([KEPT[1], KEPT[2]])
    assert [r["c2i_fc3"] for r in rows] == pytest.approx([LAYER[1], LAYER[2]])
    assert [r["pi"] for r in rows] == [-9.0, -9.0]


def test_read_only_commands_read_a_study_of_0_1_right_and_write_nothing(tmp_path):
    db = tmp_path / "study.db"
    old_study(db)
    before, mtime = digest(db), db.stat().st_mtime_ns
    status = invoke(["status", str(db), "--format", "json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["trials"][0]["last_c2i"] == pytest.approx(KEPT[2])
    exported = invoke(["export", str(db), "--metrics", "-o", "-"])
    assert exported.exit_code == 0, exported.output
    assert (digest(db), db.stat().st_mtime_ns) == (before, mtime)
    assert SCHEMA_ATTR not in stored(f"sqlite:///{db}")[0]


def test_a_study_of_a_newer_bopsweep_is_refused_by_writers_and_read_by_readers(
    tmp_path, small_cifar_dir
):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    old_study(db)
    join(url)
    newer = current_version() + 1
    set_version(url, newer)
    before = digest(db)
    with pytest.raises(NewerSchema, match="newer bopsweep"):
        join(url)
    result = invoke(["resume", str(db), "--device", "cpu"])
    one_line_error(result, "written by a newer bopsweep")
    assert f"store schema version {newer}" in result.output and "upgrade bopsweep" in result.output
    again = invoke(["grid", "--storage", url, "--study", "g", "--param", "gamma",
                                "--values", "1e-7,1e-6", "--queue-only",
                                "--data-dir", str(small_cifar_dir)])  # fmt: skip
    assert again.exit_code == 2 and "newer bopsweep" in again.output, again.output
    assert digest(db) == before  # refused before any write
    # a real process: its stderr apart from its stdout (Click's runner mixes them before 8.2)
    status = run_bopsweep("status", str(db), "--format", "json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "newer bopsweep" in status.stderr and "read as this one can" in status.stderr
    assert json.loads(status.stdout)["trials"][0]["last_c2i"] == pytest.approx(KEPT[2])
    assert digest(db) == before


def test_a_schema_version_of_the_wrong_type_is_one_line(tmp_path):
    db = tmp_path / "study.db"
    old_study(db)
    join(f"sqlite:///{db}")
    set_version(f"sqlite:///{db}", "two")
    result = invoke(["status", str(db)])
    one_line_error(result, "store schema version (bopsweep_schema) is 'two', not a whole number")


def test_the_version_is_one_number_named_by_the_changelog():
    """pyproject.toml's version is ``bopsweep.__version__`` (setuptools reads it there when it
    builds), never a second number; CHANGELOG.md has its section, and one for what is next."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "bopsweep.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", bopsweep.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(
        rf"^## \[{re.escape(bopsweep.__version__)}\] - \d{{4}}-\d\d-\d\d$", changelog, re.M
    )
    assert "## [Unreleased]" in changelog
