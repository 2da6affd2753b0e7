"""Why a database operation failed, in one line: the server's own words, not a wrapper's.

Optuna wraps every SQLAlchemy error of a write in ``StorageInternalError`` ("An exception is
raised during the commit… e.g. exceeding max length"), and SQLAlchemy wraps the driver's error:
the cause a user can act on (a wrong password, an unknown host, nothing listening on the port, a
missing database, a role that may not write) is the innermost error. A role without the right
to write is no outage: waiting cannot cure it, so the driver stops at once
(:func:`is_permission_denied`).
"""

from __future__ import annotations

from bopsweep.store.urls import redact, scrub

# SQLSTATE insufficient_privilege (PostgreSQL); MySQL's "command denied" errors
_PERMISSION_DENIED_STATE = "42501"
_PERMISSION_DENIED_WORDS = ("permission denied", "command denied")


def innermost(e: BaseException) -> BaseException:
    """The database driver's error behind Optuna's and SQLAlchemy's wrappers (``__cause__``
    and SQLAlchemy's ``orig``), or ``e`` itself."""
    seen: set[int] = set()
    while id(e) not in seen:
        seen.add(id(e))
        orig = getattr(e, "orig", None)
        inner = orig if isinstance(orig, BaseException) else e.__cause__
        if inner is None:
            break
        e = inner
    return e


def reason(e: BaseException, url: str) -> str:
    """The cause of ``e`` in one line, as the server or driver words it, secrets masked."""
    cause = innermost(e)
    lines = [" ".join(line.split()) for line in str(cause).splitlines()]
    lines = [line for line in lines if line and not line.startswith("(Background on this error")]
    return scrub("; ".join(lines), url) if lines else type(cause).__name__


def is_permission_denied(e: BaseException) -> bool:
    """The server refused because the role lacks a privilege (e.g. a role with SELECT only):
    permanent, not an outage to ride out."""
    cause = innermost(e)
    if getattr(cause, "sqlstate", None) == _PERMISSION_DENIED_STATE:
        return True
    text = str(cause).lower()
    return any(words in text for words in _PERMISSION_DENIED_WORDS)


def permission_message(e: BaseException, url: str) -> str:
    """The one line for a role that may not do what the run needs."""
    return (
        f"the database {redact(url)} refused: {reason(e, url)}; its user needs SELECT, INSERT, "
        "UPDATE and DELETE on the study's tables (and CREATE on the schema for a new "
        "database); nothing was retried"
    )
