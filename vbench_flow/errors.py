"""User-facing errors.

Every mistake a user can make (a misspelt suite key, a missing file, a video that will not
decode) surfaces as a :class:`VbfError`: it says what went wrong, where, and how to fix it.
The CLI prints it without a traceback and exits with the error's ``exit_code``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


class VbfError(Exception):
    """An error caused by input the user can fix (configuration, files, options)."""

    exit_code = 4

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ConfigError(VbfError):
    """A suite, option or argument is wrong; nothing has been computed."""

    exit_code = 4


class VideoReadError(VbfError):
    """A video file is missing, unreadable, corrupt, truncated or too short."""

    exit_code = 2


class RunInterrupted(VbfError):
    """Ctrl-C during a run: finished units are saved and ``--resume`` continues."""

    exit_code = 130


class EvaluationError(VbfError):
    """A run could not finish its evaluation (e.g. a reference set could not be scored); the units
    computed so far are saved."""

    exit_code = 2


class DiskFull(EvaluationError):
    """A write failed for lack of space (or quota); every record written before it is kept."""

    exit_code = 2


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full(exc: BaseException, path: str | os.PathLike | None = None) -> DiskFull | None:
    """The :class:`DiskFull` that ``exc`` amounts to, else None. ``path`` names the file being
    written when the exception does not (a failed ``write()`` on an open handle carries no name);
    SQLite says "database or disk is full" (SQLITE_FULL) instead of an errno."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # a library may wrap the OSError (PyAV, pandas)
        if isinstance(exc, DiskFull):
            return exc
        if (isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS) or \
                (isinstance(exc, sqlite3.Error) and _sqlite_full(exc)):
            break
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    else:
        return None
    where = getattr(exc, "filename", None) or path
    return DiskFull(f"no space left on {where or 'the device'} ({exc})", where=None,
                    fix="free some space; every finished unit is kept, and `vbf run SUITE --resume` continues")


def _sqlite_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the text is the fallback
    return code == sqlite3.SQLITE_FULL if code is not None else "is full" in str(exc)


def read_utf8(path: Path, what: str) -> str:
    """The text of ``path``; a file that is not UTF-8 is a ConfigError naming its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})",
                          where=f"{path}:{line}", fix="save the file as UTF-8") from None
