"""The warm-start zygote: a process that has imported torch and bopsweep's training code (and
loaded the study's data) once, and forks one fresh trial process per request.

Started by the driver (:mod:`bopsweep.driver.warm`), one per slot environment, with it
(``OMP_NUM_THREADS`` and ``CUDA_VISIBLE_DEVICES`` are read when torch loads)::

    python -m bopsweep.driver.zygote SOCKET_FD DRIVER_PID DATA_DIR [padding...]

It talks to the driver over a Unix ``SOCK_SEQPACKET`` socket, one JSON message per packet:
``{"ready": true}`` (or ``{"error": ...}``) once it has loaded; then, per request
``{"argv": [RUN_DIR, THREADS, DRIVER_PID]}`` carrying the trial's stdin, stdout and stderr as
file descriptors, ``{"pid": PID}`` (or ``{"error": ...}``). It exits when the driver closes
the socket, and with the driver (``PR_SET_PDEATHSIG``).

A trial is forked twice (zygote → intermediate → trial) so that, the intermediate gone, the
trial is re-parented to the driver, which is a child subreaper while it asks: the driver is
then the trial's parent, exactly as with a cold start, and waits for it itself. The trial
gets its own session (``setsid``, as ``start_new_session`` does), the driver's pipes on fds
0/1/2 and nothing else, the cold start's command line as its ``/proc/PID/cmdline`` (``ps``,
``pgrep -f bopsweep.driver.child`` and the tests find trials by it), and then runs
:func:`bopsweep.driver.child.main` as ``python -m bopsweep.driver.child`` would, from the top
level of this module, so it exits as a Python program does (atexit handlers, tracebacks).

Fork safety: the zygote never initialises CUDA (forking after CUDA init is unsafe; it refuses
to fork if anything did) and runs no torch operation (no OpenMP pool to inherit); it runs no
Python thread. The padding arguments only make room in the argv area for the trial's command
line.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from bopsweep.driver.protocol import CHILD_MODULE

ZYGOTE_MODULE = "bopsweep.driver.zygote"
WARM_ENV = "BOPSWEEP_WARM_START"  # "1" in a zygote's environment, so in its trials'
PACKET_BYTES = 65536
REPARENT_SECONDS = 10.0  # a trial waits this long to become the driver's child
PR_SET_PDEATHSIG = 1


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    driver, data_dir = int(argv[1]), argv[2]
    with contextlib.suppress(OSError):  # Linux: die with the driver (kill -9 leaves no zygote)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != driver:
        return 1  # the driver died before we could ask to follow it
    try:
        _load(data_dir)
    except Exception as e:  # the driver starts its trials cold, and says why
        send(sock, {"error": f"{type(e).__name__}: {e}"})
        return 1
    send(sock, {"ready": True})
    trial = serve(sock, driver)
    if trial is None:
        return 0
    # the trial process, from here on exactly ``python -m bopsweep.driver.child ARGV``
    from bopsweep.driver import child

    sys.argv = [child.__file__, *trial]
    return child.main(trial)


def _load(data_dir: str) -> None:
    """What every trial imports, and the study's data (checked as every load checks it).

    torch's optimizers import ``torch._dynamo`` (sympy and hundreds of modules) when the first
    is made: a second of each trial, unless done here. ``gc.freeze()`` last: the collector of
    a trial never walks the zygote's objects, so their pages stay shared and the trial's
    collections (its exit's above all) stay short.
    """
    import torch
    import torch._dynamo

    import bopsweep.driver.child
    import bopsweep.trial.train  # noqa: F401
    from bopsweep.errors import UserError
    from bopsweep.trial.cifar_files import preload_cifar10
    from bopsweep.trial.provenance import checkout

    checkout()  # git's answer, once: every trial forked from here has it

    if data_dir:
        with contextlib.suppress(UserError):  # bad data: each trial reports it as it would
            preload_cifar10(Path(data_dir))
    assert not torch.cuda.is_initialized(), "the zygote must not initialise CUDA"
    gc.collect()
    gc.freeze()


def serve(sock: socket.socket, driver: int) -> list[str] | None:
    """Fork a trial per request: None in the zygote when the driver hangs up; the trial's
    arguments in the trial process."""
    while True:
        try:
            packet, fds, _, _ = socket.recv_fds(sock, PACKET_BYTES, 3)
        except OSError:
            return None
        if not packet:
            return None
        try:
            request = json.loads(packet)
            if len(fds) != 3:
                raise ValueError(f"a request carries 3 file descriptors, got {len(fds)}")
            pid = _fork_trial(sock, driver, request["argv"], fds)
        except _Trial as t:  # the forked trial, on its way out of the zygote's loop
            fds.clear()  # on 0/1/2 now; their old numbers are closed
            return t.argv
        except Exception as e:
            send(sock, {"error": "".join(traceback.format_exception_only(e)).strip()})
        else:
            send(sock, {"pid": pid})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


class _Trial(BaseException):
    """Raised in the forked trial to leave the zygote's loop (nothing there catches it)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv


def _fork_trial(sock: socket.socket, driver: int, argv: list[str], fds: list[int]) -> int:
    """Fork the trial through an intermediate process; its pid, once it is the driver's."""
    import torch  # loaded by _load, whose failure the driver is told of (never at the top)

    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised in the zygote: forking it is unsafe")
    if threading.active_count() > 1:
        raise RuntimeError("the zygote runs threads: forking it is unsafe")
    sys.stdout.flush()
    sys.stderr.flush()
    pid_r, pid_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate: fork the trial, report its pid, exit
        try:
            os.close(pid_r)
            pid = _fork_from_intermediate(sock, driver, argv, fds, pid_w)
        except BaseException:
            os._exit(1)
        if pid == 0:  # the trial: out of the zygote's loop, past no handler of the zygote's
            raise _Trial(argv)
        try:
            os.write(pid_w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(pid_w)
    with os.fdopen(pid_r, "rb") as f:
        text = f.read()
    os.waitpid(middle, 0)  # gone: the trial is the driver's child now
    if not text:
        raise RuntimeError("the intermediate process died before forking the trial")
    return int(text)


def _fork_from_intermediate(
    sock: socket.socket, driver: int, argv: list[str], fds: list[int], pid_w: int
) -> int:
    """Fork the trial: its pid in the intermediate once it has its own session; 0 in it."""
    setsid_r, setsid_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(setsid_r)
        os.close(pid_w)
        # a trial before anyone can see it as one: named first, so that no observer ever sees
        # a session leader with the zygote's command line (a second zygote, to ps and tests)
        set_cmdline(["-m", CHILD_MODULE, *argv])
        os.setsid()  # its own session and process group, before the driver knows its pid
        os.close(setsid_w)
        _become_trial(sock, driver, argv, fds)
        return 0
    os.close(setsid_w)
    os.read(setsid_r, 1)  # EOF: the trial has its own session (or is dead)
    return pid


def _become_trial(sock: socket.socket, driver: int, argv: list[str], fds: list[int]) -> None:
    """The trial's side of the fork: the driver's pipes on 0/1/2 and no other descriptor, and
    the driver as its parent."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.close(sock.detach())
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as a cold start's close_fds
    deadline = time.monotonic() + REPARENT_SECONDS
    while os.getppid() != driver and time.monotonic() < deadline:
        time.sleep(0.0005)  # child.main refuses to run under anyone but the driver


def set_cmdline(args: list[str]) -> None:
    """Write ``args`` after argv[0] over this process's argv area, as ``/proc/PID/cmdline``
    shows it; cut short where the area (the zygote's command line) is too small."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        first = Path("/proc/self/cmdline").read_bytes().split(b"\0", 1)[0]
        room = end - start - len(first) - 1
        if room <= 0:
            return
        text = b"\0".join(a.encode() for a in args)[: room - 1]
        ctypes.memmove(start + len(first) + 1, text.ljust(room, b"\0"), room)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
