"""Errors bearl reports to users as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class BearlError(Exception):
    """Base class of every error bearl raises on purpose for bad input or bad state."""


class DatasetError(BearlError):
    """A dataset could not be found, read or validated.

    The message always names the source (file, folder or dataset id) and, where it applies,
    the field that is wrong: ``"data.hdf5: field 'rewards': 3 NaN values (first at row 17)"``.
    """

    def __init__(self, source: object, message: str, field: str | None = None) -> None:
        self.source = str(source)
        self.field = field
        where = f"{self.source}: field '{field}': " if field else f"{self.source}: "
        super().__init__(where + message)


class DatasetExists(DatasetError):
    """A dataset to be written exists already at ``folder``. The message tells Python callers to
    pass ``overwrite=True``; the CLI says its ``--overwrite`` flag instead (``how``)."""

    def __init__(
        self, source: object, folder: object, how: str = "pass overwrite=True to replace it"
    ) -> None:
        self.folder = str(folder)
        super().__init__(source, f"exists already at {folder}; {how}")


class ConfigError(BearlError):
    """A configuration value is invalid or unknown."""


class CheckpointError(BearlError):
    """A checkpoint could not be read or does not fit the run it is loaded into."""


class DiskFull(BearlError):
    """A file could not be written because its disk is full (or the user's quota is used up).
    ``note`` adds what happens next (the previous file is kept, how to continue a run)."""

    def __init__(self, path: object, reason: str = "No space left on device", note: str = ""):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: could not be written, the disk is full ({reason}){note}")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the run folder and how to continue it."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` on one line, for wrapping a library's exception (often multi-line and
    very long: torch, PyYAML) into one of ours, which are printed as one line."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
