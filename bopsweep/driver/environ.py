"""The environment of the processes the driver starts (trials, zygotes): the driver's own,
without the storage URL or any database password. A trial never needs the database, and its
environment can be read by anyone who may read ``/proc/PID/environ``.
"""

from __future__ import annotations

import os
import re

from bopsweep.defaults import STORAGE_ENV
from bopsweep.store.urls import url_secrets

# database URLs in an environment variable's value (the storage, or any other copy of it)
_DATABASE_URL = re.compile(r"(sqlite|postgresql|postgres|mysql)(\+\w+)?://", re.IGNORECASE)
# variables that hold a database password by name (libpq and the MySQL client read them)
_PASSWORD_VARIABLES = {"PGPASSWORD", "MYSQL_PWD"}
_hidden_urls: set[str] = set()  # the storage URLs of drivers in this process


def hide_from_children(url: str) -> None:
    """Keep ``url`` and its password out of the environment of every process started from now
    on (trials, zygotes), also where the URL came from ``--storage``: a trial never needs the
    database, and its environment can be read by anyone who may read ``/proc/PID/environ``."""
    _hidden_urls.add(url)


def child_environ(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process the driver starts: the driver's, less every variable that
    holds the storage URL, a database URL or a database password; plus ``extra``."""
    urls = _hidden_urls | {v for v in os.environ.values() if _DATABASE_URL.search(v)}
    secrets = {s for url in urls for s in url_secrets(url)}

    def secret(name: str, value: str) -> bool:
        if name in (STORAGE_ENV, *_PASSWORD_VARIABLES) or _DATABASE_URL.search(value):
            return True
        # a variable that is a password; not one that merely contains its letters (PATH
        # would go with a password 'bin')
        return value in secrets

    return {**{k: v for k, v in os.environ.items() if not secret(k, v)}, **extra}
