"""Where trials run (slots) and how: one fresh process per trial, in its own process group.

* a **slot** is a GPU (``CUDA_VISIBLE_DEVICES`` set to it; ``--per-gpu K`` slots each) or a CPU
  worker (torch threads split so ``workers × threads ≤ cores``);
* a :class:`TrialProcess` is ``python -m bopsweep.driver.child`` started in a new session (or
  the same, forked by the slot's zygote: :mod:`bopsweep.driver.warm`), its messages read by a
  thread (:mod:`bopsweep.driver.protocol`) and its stderr kept: the last lines in memory (for
  the failure reason) and every line in the trial's ``trial.log`` (each member's, for a
  stack).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, overload

from bopsweep.defaults import MEMORY_PER_TRIAL, PER_GPU
from bopsweep.driver.environ import child_environ
from bopsweep.driver.protocol import CHILD_MODULE, decode
from bopsweep.errors import UserError

# torch: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from bopsweep.driver.warm import ForkedProcess, Zygotes

STOP_GRACE_SECONDS = 10.0
EOF_GRACE_SECONDS = 2.0  # a process gone whose pipe a leftover child still holds open
STDERR_LINES = 50  # of a trial's stderr kept in memory for its failure reason


@dataclass(frozen=True)
class Slot:
    name: str
    device: str  # "cpu" or "cuda" (the one GPU the slot's CUDA_VISIBLE_DEVICES shows)
    env: dict[str, str]
    threads: int


class Slots(Sequence[Slot]):
    """The slots of a run, each made when asked for: a dry run of ``--workers 10000000
    --allow-oversubscribe`` names the first few and counts the rest in an instant."""

    def __init__(self, count: int, make: Callable[[int], Slot]) -> None:
        self.size, self.make = count, make

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Slot: ...
    @overload
    def __getitem__(self, index: slice) -> list[Slot]: ...
    def __getitem__(self, index: int | slice) -> Slot | list[Slot]:
        if isinstance(index, slice):
            return [self.make(i) for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.make(index % self.size)


def make_slots(
    device: str = "auto",
    gpus: list[int] | None = None,
    per_gpu: int | None = None,
    workers: int | None = None,
    oversubscribe: bool = False,
) -> Slots:
    """GPU slots (all visible GPUs unless ``gpus`` names some), else CPU workers; no more
    than the machine holds (:func:`check_capacity`) unless ``oversubscribe``."""
    if per_gpu is not None and per_gpu < 1:
        raise UserError(f"--per-gpu must be >= 1, got {per_gpu}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if device == "cpu" and (gpus is not None or per_gpu is not None):
        raise UserError("--gpus and --per-gpu place trials on GPUs: drop them, or --device cpu")
    cores = available_cores()
    if device != "cpu":
        visible = visible_gpus()
        chosen = _chosen_gpus(gpus, visible)
        if chosen:
            k = per_gpu or PER_GPU
            n = len(chosen) * k
            check_capacity(n, "--per-gpu" if per_gpu else "GPU", oversubscribe)
            order = {} if "CUDA_DEVICE_ORDER" in os.environ else {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

            def gpu_slot(i: int) -> Slot:
                g, member = chosen[i // k], i % k
                env = {**order, "CUDA_VISIBLE_DEVICES": visible[g]}
                name = f"gpu{g}" + (f".{member}" if k > 1 else "")
                return Slot(name, "cuda", env, max(1, cores // n))

            return Slots(n, gpu_slot)
        if device.startswith("cuda"):
            raise UserError("--device cuda asked for, but no GPU is visible here; use --device cpu")
    n = workers or 1
    check_capacity(n, "--workers", oversubscribe)
    threads = max(1, cores // n)
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}
    return Slots(n, lambda i: Slot(f"cpu{i}", "cpu", env, threads))


def _chosen_gpus(gpus: list[int] | None, visible: list[str]) -> list[int]:
    """Indices into ``visible`` the slots use: ``--gpus`` (checked), else all."""
    if gpus is None:
        return list(range(len(visible)))
    if gpus and not visible:
        raise UserError("--gpus given, but no GPU is visible here; use --device cpu")
    beyond = [g for g in gpus if not 0 <= g < len(visible)]
    if beyond:
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f" (CUDA_VISIBLE_DEVICES={inherited})" if inherited is not None else ""
        raise UserError(
            f"--gpus {','.join(map(str, beyond))}: {len(visible)} GPU(s) are visible here"
            f"{seen}, so --gpus takes indices 0 to {len(visible) - 1} into that list"
        )
    return gpus


def visible_gpus() -> list[str]:
    """What each visible GPU is called in the ``CUDA_VISIBLE_DEVICES`` a slot gets: the
    inherited variable's entries (indices, ``GPU-…`` UUIDs, ``MIG-…``), as many as CUDA sees,
    so ``--gpus 0`` under ``CUDA_VISIBLE_DEVICES=2,3`` is physical GPU 2; with no variable,
    0 … n-1. Counted without initialising CUDA in the driver (a zygote forks it)."""
    count = _visible_gpu_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        return [str(i) for i in range(count)]
    return [e.strip() for e in inherited.split(",") if e.strip()][:count]


def available_cores() -> int:
    """The cores this process may run on (its affinity, e.g. a container's or taskset's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_memory() -> int | None:
    """Bytes of memory of the machine, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def slot_capacity() -> int:
    """The most trial processes at once this machine holds: one per core, and no more than
    its memory holds at :data:`~bopsweep.defaults.MEMORY_PER_TRIAL` each."""
    memory = physical_memory()
    by_memory = max(1, memory // MEMORY_PER_TRIAL) if memory else available_cores()
    return max(1, min(available_cores(), by_memory))


def check_capacity(n: int, option: str, oversubscribe: bool) -> None:
    """Refuse more trial processes than :func:`slot_capacity`, unless ``oversubscribe``: each
    is a Python process with torch and the data (and a zygote, with warm starts)."""
    cap = slot_capacity()
    if n > cap and not oversubscribe:
        raise UserError(
            f"{option} asks for {n} trial processes at once; this machine holds {cap} "
            f"({available_cores()} cores, {MEMORY_PER_TRIAL / 2**30:.0f} GiB of memory per "
            "trial process); use fewer, or --allow-oversubscribe to run them anyway"
        )


def _visible_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


class TrialProcess:
    """A running trial process. ``on_message`` gets each message from a reader thread, then
    None at the end of the channel."""

    def __init__(
        self,
        run_dir: Path,
        slot: Slot,
        job: dict[str, Any],
        on_message: Callable[[dict[str, Any] | None], None],
        zygotes: Zygotes | None = None,
        logs: Sequence[Path] = (),
    ) -> None:
        """Start it (no database write here: a failed write must not orphan it): forked by
        the slot's zygote where there is one that can (a warm start), else cold. ``job`` is a
        configuration, or a stack's ``{"stack": [{"config": ..., "run_dir": ...}, ...]}``,
        whose stdin stays open for :meth:`command`.

        Its stderr comes to the driver through a pipe (and on to ``trial.log``, best effort), so
        its last words reach the database even when the log cannot be written (a full disk).
        ``logs``: the logs it goes to, where not ``run_dir``'s alone (a stack's process: every
        member's, so each trial's folder holds the words of the process that ran it).
        """
        self.logs = list(logs) or [run_dir / "trial.log"]
        self.log = self.logs[0]
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.eof = False
        self.exited_at: float | None = None
        argv = [str(run_dir), str(slot.threads), str(os.getpid())]
        forked = zygotes.spawn(slot.name, argv) if zygotes is not None else None
        self.proc: subprocess.Popen[str] | ForkedProcess = forked or cold_start(argv, slot)
        self.warm = forked is not None
        self._on_message = on_message
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._keep_stderr, daemon=True)
        self._stderr_reader.start()
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died at once: its stderr says why
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            if "stack" not in job:
                self.proc.stdin.close()

    def command(self, message: dict[str, Any]) -> None:
        """Tell a running stack something (``{"stop": k}``); lost if it has exited."""
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):  # gone, or its pipe closed
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def exited(self) -> bool:
        """The process is gone and its messages are read: at once at the end of its channel,
        or after a short grace when a leftover child of it still holds the channel open."""
        if self.proc.poll() is None:
            return False
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return self.eof or time.monotonic() - self.exited_at > EOF_GRACE_SECONDS

    def making_progress(self) -> bool:
        """Whether it runs and can make progress: alive and not stopped (SIGSTOP, a tracer;
        Linux: the state in /proc/PID/stat). Its driver keeps its trial's heartbeat only
        then, so a stopped trial is judged stale after the grace period and re-queued."""
        if self.proc.poll() is not None:
            return False
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:  # no /proc (not Linux): alive is all that is known
            return True
        return stat.rsplit(")", 1)[1].split()[0] not in ("T", "t")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group (the trial and anything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def last_words(self) -> collections.deque[str]:
        """The tail of its stderr, once the lines still on their way have arrived."""
        self._stderr_reader.join(timeout=EOF_GRACE_SECONDS)
        return self.stderr_tail

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = decode(line)
            if message is not None:
                self._on_message(message)
        self._on_message(None)  # the driver sets ``eof`` when it handles this, in order

    def _keep_stderr(self) -> None:
        """Drain stderr: the last lines in memory, every line to the log (best effort: a log
        that cannot be written, e.g. on a full disk, must not lose the lines in memory)."""
        assert self.proc.stderr is not None
        logs: list[IO[str]] = []
        for path in self.logs:
            with contextlib.suppress(OSError):
                logs.append(path.open("a"))
        for line in self.proc.stderr:
            self.stderr_tail.append(line)
            for log in list(logs):
                try:
                    log.write(line)
                    log.flush()
                except OSError:  # this log is lost from here on; the others go on
                    with contextlib.suppress(OSError):
                        log.close()
                    logs.remove(log)
        for log in logs:
            with contextlib.suppress(OSError):
                log.close()


def cold_start(argv: list[str], slot: Slot) -> subprocess.Popen[str]:
    """``python -m bopsweep.driver.child ARGV`` in a session of its own, with pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environ({**slot.env, "PYTHONUNBUFFERED": "1"}),
        start_new_session=True,
        text=True,
        errors="replace",
    )


def stop_all(processes: list[TrialProcess]) -> None:
    """Stop every process group: SIGTERM, then SIGKILL after a grace period."""
    processes = list({id(p): p for p in processes}.values())  # a stack's members share one
    for p in processes:
        p.stop()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for p in processes:
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.stop(signal.SIGKILL)
            p.proc.wait()
