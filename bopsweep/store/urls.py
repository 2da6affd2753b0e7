"""Database URLs: which storage a command uses, its file, and its secrets kept out of output.

``sqlite:///study.db`` is the embedded default (or ``$BOPSWEEP_STORAGE``); a PostgreSQL or
MySQL URL lets several machines share a study. URLs are parsed by SQLAlchemy; passwords (in the
authority or in secret query keys) are masked wherever a URL is printed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bopsweep.defaults import DEFAULT_STORAGE, STORAGE_ENV
from bopsweep.errors import UserError

_URL = re.compile(r"^(sqlite|postgresql|postgres|mysql)(\+\w+)?://")
# URL query keys that carry a secret (libpq and the MySQL drivers accept passwords there too)
_SECRET_KEYS = {"password", "passwd", "pwd", "sslpassword", "token", "secret"}
# whatever stands between '://user:' and '@', also in text that is no parsable URL
_AUTH = re.compile(r"(://[^:/@?#\s]*:)[^@/?#\s]*@")
_SECRET_OPTION = re.compile(rf"\b((?:{'|'.join(_SECRET_KEYS)})\s*=\s*)[^&\s'\"]+", re.IGNORECASE)


def storage_url(storage: str | None = None, database: Path | None = None) -> str:
    """The storage to use: a positional database path, ``--storage``, $BOPSWEEP_STORAGE, default."""
    if database is not None and storage is not None:
        raise UserError("give the database either as a path or as --storage, not both")
    if database is not None:
        return f"sqlite:///{database}"
    url = storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if not _URL.match(url):
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return f"sqlite:///{url}"
        raise UserError(
            f"{redact(url)} is not a database URL; use sqlite:///FILE.db or "
            "postgresql://USER:PASSWORD@HOST/DB"
        )
    parse_url(url)  # malformed URLs are refused here, not deep inside SQLAlchemy
    return url


def parse_url(url: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(f"cannot read the database URL {redact(url)}") from None


def engine_url(url: str) -> str:
    """The URL handed to SQLAlchemy: ``postgresql://`` (no driver named) gets psycopg 3, the
    driver ``bopsweep[postgres]`` installs. SQLAlchemy 2.1 picks it by itself; 2.0, the newest
    for Python 3.10, would pick psycopg2 and fail for want of it."""
    prefix = "postgresql://"
    return "postgresql+psycopg://" + url[len(prefix) :] if url.startswith(prefix) else url


def _secrets(url: str) -> list[str]:
    """The URL's password and secret query values, as written and as URL-encoded."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL: only the pattern of _AUTH applies
        return []
    values = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in _SECRET_KEYS:
            values += [value] if isinstance(value, str) else list(value)
    return [v for value in values for v in {value, quote(value, safe=""), quote_plus(value)}]


def redact(url: str) -> str:
    """The URL with its password (in the authority or the query string) replaced by ***."""
    return scrub(url, url)


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's secrets masked: wherever a URL or a ``password=`` option holds
    one, and a long secret (8+ characters) anywhere as a whole word. A short one is masked only
    in those places, so it cannot mangle the words of the message around it."""
    text = _SECRET_OPTION.sub(r"\1***", _AUTH.sub(r"\1***@", text))
    for secret in sorted(set(_secrets(url)), key=len, reverse=True):
        text = text.replace(f":{secret}@", ":***@")  # in a URL, whatever characters it holds
        if len(secret) >= 8:
            text = re.sub(rf"(?<![\w%]){re.escape(secret)}(?![\w%])", "***", text)
    return text


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (query options such as ``?timeout=30`` stripped);
    None for other databases and for SQLite in memory."""
    if not url.startswith("sqlite"):
        return None
    database = parse_url(url).database
    if database and database.startswith("file:"):  # a SQLite URI filename (uri=true)
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


def database_file(url: str) -> Path | None:
    """The real file behind a SQLite URL: symlinks resolved, so every alias names one file."""
    path = sqlite_path(url)
    return Path(os.path.realpath(path)) if path is not None else None


def checkpoint_base(url: str, override: Path | None = None) -> Path:
    """Where studies keep their trial folders: ``--checkpoint-dir``, else ``DB.ckpt/`` beside a
    SQLite file (``bopsweep.ckpt/`` in the working folder for a server). Each study has its
    own folder in it, keyed by its identity (:func:`bopsweep.folders.study_folder`)."""
    if override is not None:
        return Path(os.path.realpath(Path(override).expanduser()))
    path = database_file(url)
    return Path(os.path.realpath(path.with_suffix(".ckpt") if path else "bopsweep.ckpt"))


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0] if text else type(e).__name__
