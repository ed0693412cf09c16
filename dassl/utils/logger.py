"""Tee console output into a log file (as Dassl's ``setup_logger``)."""
from __future__ import annotations

import os
import os.path as osp
import sys
import time
from typing import IO, Optional

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """File-like object writing to a console stream and to a log file.

    Args:
        fpath: log file to open (mode "w"); ignored if ``file`` is given.
        console: stream to mirror (default: the current ``sys.stdout``).
        file: an already-open file to share (lets stdout and stderr share one log).
    """

    def __init__(self, fpath: Optional[str] = None, console: Optional[IO] = None,
                 file: Optional[IO] = None):
        self.console = console if console is not None else sys.stdout
        self.file = file
        if self.file is None and fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            self.file = open(fpath, "w")

    def write(self, msg: str) -> None:
        self.console.write(msg)
        if self.file is not None and not self.file.closed:
            self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        # The console is not ours to close; only the log file is.
        if self.file is not None and not self.file.closed:
            self.file.close()

    def isatty(self) -> bool:  # tqdm & co. query this
        return getattr(self.console, "isatty", lambda: False)()

    def fileno(self) -> int:
        return self.console.fileno()

    def __getattr__(self, name):  # encoding, errors, ... come from the console
        if name in ("console", "file"):  # not yet set (e.g. during copy/unpickle)
            raise AttributeError(name)
        return getattr(self.console, name)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def _unwrap(stream: IO) -> IO:
    """Strip earlier Loggers so repeated setup_logger calls do not nest tees."""
    while isinstance(stream, Logger):
        if stream.file is not None:
            stream.close()
        stream = stream.console
    return stream


def setup_logger(output: Optional[str] = None) -> Optional[str]:
    """Mirror stdout and stderr into a log file.

    ``output`` ending in ``.txt``/``.log`` is the log file itself, otherwise the
    log is ``output/log.txt``. An existing log is never overwritten: a
    ``-%Y-%m-%d-%H-%M-%S`` suffix is appended instead. Returns the log path.
    """
    if output is None:
        return None
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")

    out_console, err_console = _unwrap(sys.stdout), _unwrap(sys.stderr)
    mkdir_if_missing(osp.dirname(fpath))
    f = open(fpath, "w")
    sys.stdout = Logger(console=out_console, file=f)
    sys.stderr = Logger(console=err_console, file=f)
    return fpath
