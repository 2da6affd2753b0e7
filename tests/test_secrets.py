"""The storage's password stays secret: a URL whose password is not URL-encoded is refused
without printing any of it, and no process the driver starts (trials, zygotes) gets the URL or
the password in its environment (read from ``/proc/PID/environ`` of real running processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    PASSWORD,
    invoke,
    one_line_error,
    queue,
    trial_processes,
    wait_until,
    zygotes,
)

UNENCODED = "Qz7@Kx/9#Wv?Jm%Zr"  # 17 characters; a parser cuts it at @, /, # or ?


def _pieces(secret: str, size: int = 3) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.parametrize(
    "password",
    [UNENCODED, "ab@cd", "a/bcd", "ab#cd", "ab?cd", "50%off", "p@ss/w0rd"],
)
@pytest.mark.parametrize("how", ["--storage", "environment"])
def test_a_password_that_is_not_url_encoded_is_refused_unprinted(password, how, tmp_path):
    url = f"postgresql://alice:{password}@db.lab:5432/opt"
    args, env = ["status"], {}
    if how == "--storage":
        args += ["--storage", url]
    else:
        env["BOPSWEEP_STORAGE"] = url
    result = invoke(args, env=env)
    one_line_error(result, 'urllib.parse.quote(password, safe="")')
    assert not [p for p in _pieces(password) if p in result.output], result.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://alice:Qz7%40Kx%2F9%23Wv%3FJm%25Zr@127.0.0.1:1/opt",  # encoded: fine
        "postgresql://127.0.0.1:1/opt?sslrootcert=/a@b",  # an '@' in the query
        "postgresql://alice:pw@127.0.0.1:1/opt?application_name=a@b",
    ],
)
def test_an_encoded_password_or_an_at_in_the_query_is_accepted(url):
    result = invoke(["status", "--storage", url])
    assert result.exit_code == 2 and "not URL-encoded" not in result.output  # unreachable


def _environ(pid: int) -> dict[str, str]:
    raw = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)


def _assert_clean(pid: int, url: str) -> None:
    env = _environ(pid)
    assert "BOPSWEEP_STORAGE" not in env and "PGPASSWORD" not in env, sorted(env)
    text = "\n".join(f"{k}={v}" for k, v in env.items())
    assert PASSWORD not in text and url not in text and "postgresql://" not in text


@pytest.mark.slow
@pytest.mark.parametrize("starts", ["warm", "cold"])
def test_trial_processes_and_zygotes_get_no_storage_url_or_password(
    pg,
    small_cifar_dir,
    tmp_path,
    starts,
):
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-8"}, epochs=200)
    env = {
        **os.environ,
        "BOPSWEEP_STORAGE": pg,  # the URL as most users give it
        "OTHER_COPY_OF_THE_URL": pg,
        "PGPASSWORD": PASSWORD,
        "A_VARIABLE_WITH_THE_PASSWORD": PASSWORD,
        "AN_INNOCENT_VARIABLE": "kept",
    }
    args = ["worker", "--study", "s", "--quiet", "--checkpoint-dir", str(tmp_path / "c")]
    if starts == "cold":
        args += ["--cold-starts"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "bopsweep", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: trial_processes(driver.pid), timeout=120, what="a trial process")
        pids = list(trial_processes(driver.pid))
        if starts == "warm":
            pids += zygotes(driver.pid)
            assert len(pids) == 2
        for pid in pids:
            _assert_clean(pid, pg)
        assert _environ(pids[0])["AN_INNOCENT_VARIABLE"] == "kept"
    finally:
        driver.send_signal(signal.SIGTERM)
        driver.communicate(timeout=120)


def test_a_variable_that_only_contains_the_passwords_letters_is_kept(monkeypatch):
    from bopsweep.driver.environ import child_environ

    monkeypatch.setenv("BOPSWEEP_STORAGE", "postgresql://bopsweep:bopsweep@db.lab/studies")
    monkeypatch.setenv("VIRTUAL_ENV", "/home/bopsweep/venv")  # the README's user and password
    monkeypatch.setenv("COPY", "bopsweep")
    env = child_environ({})
    assert env["VIRTUAL_ENV"] == "/home/bopsweep/venv" and env["PATH"] == os.environ["PATH"]
    assert "BOPSWEEP_STORAGE" not in env and "COPY" not in env
