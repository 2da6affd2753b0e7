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
from urllib.parse import quote, quote_plus

from bopsweep.defaults import DEFAULT_STORAGE, STORAGE_ENV
from bopsweep.errors import UserError

# sqlalchemy: imported where used, as a trial process loads this module

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
    check_password_encoded(url)  # before anything parses (and could print) a cut password
    parse_url(url)  # malformed URLs are refused here, not deep inside SQLAlchemy
    return url


_USER = re.compile(r"[^:/@?#]*")  # the user name of the authority (its end: ':' or '@')
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
ENCODE_HINT = (
    "python3 -c 'import getpass, urllib.parse; "
    'print(urllib.parse.quote(getpass.getpass(), safe=""))\''
)


def _another_at(after: str) -> bool:
    """Whether what follows the authority's first ``@`` holds another outside a query value
    (``?key=a@b`` is a value; ``host@…``, ``db#…@`` or ``?x@host`` is a password cut short)."""
    head, sep, rest = [*re.split(r"([?#])", after, maxsplit=1), "", ""][:3]
    if "@" in head:
        return True
    if sep == "#":
        return "@" in rest
    return any("@" in p and "=" not in p.split("@", 1)[0] for p in re.split(r"[&#]", rest))


def check_password_encoded(url: str) -> None:
    """Refuse a URL whose password is not URL-encoded: an ``@``, ``/``, ``?`` or ``#`` in it
    (or a ``%`` not followed by two hex digits) makes every parser cut the URL at the wrong
    place, so the "host" or "database" it prints is part of the password. The message prints
    no part of the URL's authority.

    The user's part ends at the first ``:`` or ``@``; a password is what lies between that
    ``:`` and the next ``@``, and no second ``@`` may come before the query.
    ``host:PORT/…`` (digits) is a port, not a password."""
    if url.startswith("sqlite") or "://" not in url:  # a file path: no password
        return
    rest = url.split("://", 1)[1]
    user = _USER.match(rest)
    assert user is not None  # the pattern matches the empty string
    tail = rest[user.end() :]
    if tail.startswith("@"):  # a user and no password: only the authority's '@' count matters
        problem = "@" in re.split(r"[/?#]", tail[1:], maxsplit=1)[0]
    elif tail.startswith(":") and "@" in tail:
        password, after = tail[1:].split("@", 1)
        if re.fullmatch(r"\d*", re.split(r"[/?#]", password, maxsplit=1)[0]) and re.search(
            r"[/?#]", password
        ):
            return  # host:PORT/DB?…@… : an '@' in the query, no password
        problem = bool(re.search(r"[/?#]", password) or _BARE_PERCENT.search(password))
        problem = problem or _another_at(after)
    else:
        return
    if problem:
        raise UserError(
            "the password in the database URL is not URL-encoded (it holds @, /, ?, # or a % "
            "that starts no %XX), so the URL would be cut in the wrong place; put it in the URL "
            'encoded, as urllib.parse.quote(password, safe="") gives it, e.g. with: ' + ENCODE_HINT
        )


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


def url_secrets(url: str) -> list[str]:
    """The URL's password and secret query values, as written and as URL-encoded."""
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
    for secret in sorted(set(url_secrets(url)), key=len, reverse=True):
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
