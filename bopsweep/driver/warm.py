"""Warm starts: the driver's side of the zygotes (:mod:`bopsweep.driver.zygote`).

A trial process started cold spends seconds importing torch and bopsweep and loading the data
before its first step; on short trials (quick studies, searches with pruning) that is most of
its life. With warm starts a zygote did all that once (one per slot environment: one for all
CPU slots, one per GPU), and each trial is still a fresh process of its own (its own session
and process group, the driver's pipes, the driver as its parent), forked from it.

The warm machinery never costs a trial: if a zygote cannot start, dies, or fails to fork, the
trial starts cold at once and the zygote is replaced for the next one; after
:data:`MAX_ZYGOTE_FAILURES` failures of a zygote, the slots it served start their trials cold.
Zygotes end with the driver: closed at the end of its run, killed with it
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bopsweep.driver.environ import child_environ
from bopsweep.driver.zygote import PACKET_BYTES, WARM_ENV, ZYGOTE_MODULE

READY_SECONDS = 120.0  # for a zygote to import torch and load the data (a loaded machine)
FORK_SECONDS = 30.0  # for a zygote to answer a request
CLOSE_SECONDS = 5.0
MAX_ZYGOTE_FAILURES = 3  # per zygote; then the trials of its slots start cold
PR_SET_CHILD_SUBREAPER = 36
TITLE_SLACK = 64  # bytes of a trial's command line besides its run folder and the interpreter


def available() -> bool:
    """Warm starts need Linux: fork, ``SCM_RIGHTS`` and ``PR_SET_CHILD_SUBREAPER``."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class ForkedProcess:
    """A trial process forked by a zygote and re-parented to the driver, with the part of
    :class:`subprocess.Popen`'s interface the driver uses."""

    def __init__(self, pid: int, stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> None:
        self.pid, self.stdin, self.stdout, self.stderr = pid, stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours to wait for: as Popen does
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """One zygote process and the socket to it."""

    def __init__(self, env: dict[str, str], data_dir: str, title_room: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.ready = False
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    ZYGOTE_MODULE,
                    str(theirs.fileno()),
                    str(os.getpid()),
                    data_dir,
                    *[""] * title_room,  # room in its argv area for a trial's command line
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env=child_environ({**env, "PYTHONUNBUFFERED": "1", WARM_ENV: "1"}),
                start_new_session=True,  # Ctrl-C in the terminal is the driver's to handle
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()

    def spawn(self, argv: list[str]) -> ForkedProcess:
        """Fork a trial process running ``python -m bopsweep.driver.child ARGV``; raises
        :class:`ZygoteError` (or OSError) when the zygote cannot."""
        if not self.ready_within(READY_SECONDS):
            raise ZygoteError(f"the zygote did not load within {READY_SECONDS:.0f} s")
        if self.proc.poll() is not None:
            raise ZygoteError(f"the zygote exited with code {self.proc.returncode}")
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ours = [stdin_w, stdout_r, stderr_r]
        try:
            with _subreaper():  # the trial, its intermediate gone, becomes our child
                socket.send_fds(
                    self.sock, [json.dumps({"argv": argv}).encode()], [stdin_r, stdout_w, stderr_w]
                )
                message = self._receive(FORK_SECONDS)
            if "pid" not in message:
                raise ZygoteError(message.get("error", f"unexpected {message}"))
            process = ForkedProcess(
                int(message["pid"]),
                os.fdopen(stdin_w, "w"),
                os.fdopen(stdout_r, "r", errors="replace"),
                os.fdopen(stderr_r, "r", errors="replace"),
            )
        except BaseException:
            for fd in ours:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        return process

    def ready_within(self, seconds: float) -> bool:
        """Whether it has loaded, waiting up to ``seconds`` for it; raises
        :class:`ZygoteError` if it failed to, or has not within :data:`READY_SECONDS` of its
        start."""
        if self.ready:
            return True
        left = self.started + READY_SECONDS - time.monotonic()
        if left <= 0:
            raise ZygoteError(f"the zygote did not load within {READY_SECONDS:.0f} s")
        if not select.select([self.sock], [], [], min(seconds, left))[0]:
            return False
        message = self._receive(FORK_SECONDS)
        if not message.get("ready"):
            raise ZygoteError(message.get("error", f"unexpected {message}"))
        self.ready = True
        return True

    def _receive(self, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        try:
            packet = self.sock.recv(PACKET_BYTES)
        except TimeoutError:
            raise ZygoteError(f"the zygote did not answer within {timeout:.0f} s") from None
        if not packet:
            raise ZygoteError(f"the zygote exited (code {self.proc.poll()})")
        message: dict[str, Any] = json.loads(packet)
        return message

    def close(self) -> None:
        """Hang up (it exits), then make sure it is gone and reaped."""
        self.sock.close()
        try:
            self.proc.wait(timeout=CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ZygoteError(RuntimeError):
    """A zygote could not start a trial (the trial then starts cold)."""


# how a zygote fails: it says so, exits, or its socket or answer is broken
_FAILURES = (ZygoteError, OSError, ValueError)


class Zygotes:
    """A zygote per slot environment, started ahead and replaced when it fails.

    Slots whose environments are equal (every CPU slot; the slots of one GPU) share one: a
    zygote forks one trial at a time, in a fraction of a second, and every zygote costs
    seconds of importing and hundreds of MB, so one per slot would cost ``--workers 8``
    eight of each for nothing."""

    def __init__(
        self,
        envs: dict[str, dict[str, str]],
        data_dir: str | None,
        run_root: Path,
        note: Callable[[str], None],
    ) -> None:
        """``envs``: each slot's environment by name; ``data_dir``: the data its trials use;
        ``run_root``: the folder of the trials' run folders (it sizes their command line)."""
        self.data_dir, self.note = data_dir or "", note
        self.title_room = len(sys.executable) + len(str(run_root)) + TITLE_SLACK
        # each slot -> the name of its zygote: the first slot of its environment
        firsts: dict[tuple[tuple[str, str], ...], str] = {}
        self.group = {
            slot: firsts.setdefault(tuple(sorted(env.items())), slot) for slot, env in envs.items()
        }
        self.envs = {name: envs[name] for name in firsts.values()}
        self.zygotes: dict[str, Zygote] = {}
        self.failures: dict[str, int] = dict.fromkeys(self.envs, 0)
        for name in self.envs:
            self._start(name)

    def spawn(self, slot: str, argv: list[str]) -> ForkedProcess | None:
        """A trial forked by the zygote of the slot's environment, or None: then start it
        cold."""
        name = self.group[slot]
        zygote = self.zygotes.get(name)
        if zygote is None:
            return None
        try:
            return zygote.spawn(argv)
        except _FAILURES as e:
            self._failed(name, slot, e, "the trial starts cold")
            return None

    def await_ready(self, slot: str, keep_alive: Callable[[], None]) -> None:
        """Until the zygote of ``slot`` has loaded (one that fails is replaced and waited for;
        with none left the trial starts cold), ``keep_alive`` every second: the driver has
        claimed the trial it is for, and a zygote loads for seconds, longer than a short grace
        period, in which the trial and the driver's running ones must not go without a
        heartbeat (another driver would judge them stale)."""
        name = self.group[slot]
        while (zygote := self.zygotes.get(name)) is not None:
            try:
                if zygote.ready_within(1.0):
                    return
            except _FAILURES as e:
                self._failed(name, slot, e, "a new one loads")
            keep_alive()

    def _failed(self, name: str, slot: str, e: Exception, then: str) -> None:
        """The zygote ``name`` failed (as ``slot``'s trial started): gone, and replaced until
        it has failed :data:`MAX_ZYGOTE_FAILURES` times."""
        zygote = self.zygotes.pop(name)
        self.failures[name] += 1
        zygote.proc.kill()
        zygote.close()
        if self.failures[name] < MAX_ZYGOTE_FAILURES:
            self.note(f"{slot}: warm start failed ({e}); {then}")
            self._start(name)
        else:
            self.note(f"{slot}: warm start failed ({e}); trials there start cold from now on")

    def _start(self, name: str) -> None:
        try:
            self.zygotes[name] = Zygote(self.envs[name], self.data_dir, self.title_room)
        except OSError as e:
            self.failures[name] = MAX_ZYGOTE_FAILURES
            self.note(f"{name}: no zygote ({e}); trials there start cold")

    def close(self) -> None:
        for zygote in self.zygotes.values():  # all hang up first: they exit side by side
            zygote.sock.close()
        for zygote in self.zygotes.values():
            zygote.close()
        self.zygotes.clear()


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """This process adopts its descendants' orphans while the block runs (Linux)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot become a child subreaper")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
