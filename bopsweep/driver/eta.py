"""The time a study has left, estimated from the epochs this run has trained. Pure: the clock's
readings are passed in, so the estimate is the same whenever it is computed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpochClock:
    """When this run started and when each epoch it trained ended: the rate of its ETA.

    Only epochs trained in this run are measured. Epochs restored from checkpoints on resume
    are work done, not work measured: counting them would make the first minutes of a resumed
    study look hundreds of times faster than they are.
    """

    started: float
    measured: int = 0
    last: float | None = None  # when the last measured epoch ended

    def epoch(self, now: float) -> None:
        """An epoch ended at ``now`` (``time.monotonic()`` or any clock in seconds)."""
        self.measured += 1
        self.last = now

    def seconds_per_epoch(self) -> float | None:
        """The study's pace: seconds from the start to the last measured epoch, per epoch
        measured (epochs of several trials at once shorten it). None before the first."""
        if self.last is None or self.last <= self.started:
            return None
        return (self.last - self.started) / self.measured

    def eta(self, remaining: int, now: float) -> float | None:
        """Seconds until ``remaining`` epochs are done at the measured pace; None until an epoch
        is measured. Between epochs it counts down from the last measured one, for at most one
        epoch's time: a run that stalls keeps its estimate instead of running it down to 0."""
        if remaining <= 0:
            return 0.0
        pace = self.seconds_per_epoch()
        if pace is None or self.last is None:
            return None
        return remaining * pace - min(max(0.0, now - self.last), pace)


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``Dd HH:MM:SS`` past a day); ``—`` for an unknown duration."""
    if seconds is None:
        return "—"
    total = round(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"
