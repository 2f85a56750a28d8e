"""User-facing errors.

Every mistake a user can make (a misspelt suite key, a missing file, a video that will not
decode) surfaces as a :class:`VbfError`: it says what went wrong, where, and how to fix it.
The CLI prints it without a traceback and exits with the error's ``exit_code``.
"""

from __future__ import annotations


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
