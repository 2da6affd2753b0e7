"""A PostgreSQL storage that cannot be used says why in one line, against the real test server:
a wrong password, an unknown host, a missing database, nothing listening on the port, and a
role that may only read (exit 2 at once, no retries). The password is never printed.

The server comes from ``.ci/postgres.sh`` (see tests/test_postgres.py); these tests never stop
or restart it.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers import (
    PASSWORD,
    bopsweep,
    queue,
)

pytestmark = pytest.mark.postgres
WRAPPER = "An exception is raised during the commit"  # Optuna's words, which name no cause


def _free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with(
    url: str,
    *,
    password: str | None = None,
    host: str | None = None,
    port: int | None = None,
    database: str | None = None,
) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    parsed = parsed.set(
        password=password if password is not None else parsed.password,
        host=host or parsed.host,
        port=port or parsed.port,
        database=database or parsed.database,
    )
    return parsed.render_as_string(hide_password=False)


def _one_line_error(result, *words: str) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(err.splitlines()) == 1, err
    assert WRAPPER not in err and "Traceback" not in err
    assert PASSWORD not in err and "n0t-the-pw" not in err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"password": "n0t-the-pw"}, ["password authentication failed"]),
        ({"host": "no-such-host.invalid"}, ["no-such-host.invalid"]),
        ({"database": "no_such_database_here"}, ['"no_such_database_here" does not exist']),
        ({"port": "free"}, ["Connection refused"]),
    ],
    ids=["wrong-password", "unknown-host", "missing-database", "nothing-listening"],
)
@pytest.mark.parametrize("command", ["status", "worker"])
def test_a_database_that_cannot_be_reached_is_one_line_naming_why(
    pg,
    tmp_path,
    change,
    words,
    command,
):
    change = {k: (_free_port() if v == "free" else v) for k, v in change.items()}
    result = bopsweep(command, "--storage", _with(pg, **change), "--study", "s", cwd=tmp_path)
    _one_line_error(result, *words)


def _revoke_writes(url: str) -> None:
    """The database's own user keeps SELECT only on every table (PostgreSQL lets an owner
    revoke its own privileges): a role that may read the study but not write it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public "
            "FROM CURRENT_USER"
        )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["worker", "resume"])
def test_a_role_that_may_only_read_is_refused_at_once(
    pg,
    small_cifar_dir,
    tmp_path,
    command,
):
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-8,1e-7"}, epochs=1)
    _revoke_writes(pg)
    began = time.monotonic()
    args = [command, "--storage", pg, "--study", "s", "--checkpoint-dir", str(tmp_path / "c")]
    if command == "resume":
        args += ["--quiet"]
    result = bopsweep(*args, cwd=tmp_path, timeout=120)
    err = _one_line_error(result, "permission denied")
    assert "unreachable" not in err and "retrying" not in result.stdout + result.stderr
    assert time.monotonic() - began < 60
