"""SIGTERM as an ordinary exit, so that `finally` blocks clean up before the process ends.

Python's default action for SIGTERM ends the process on the spot: no `finally` block and no
context manager runs, and a half-extracted `.<folder>.extract-*` directory stays in the data root.
SLURM (at a job's time limit, or `scancel`) and Snakemake (when a run is cancelled) send SIGTERM
first and SIGKILL after a grace period. With the handler installed, SIGTERM raises
`SystemExit(143)` (128 + 15, the shell's code for "terminated") in the main thread, so extraction
removes its temporary folder and a download keeps its resumable `.part` file. What SIGKILL leaves
behind is removed by the next run (`extract.remove_stale_extractions`).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

EXIT_TERMINATED = 128 + signal.SIGTERM


def _exit(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise SystemExit(EXIT_TERMINATED)


def install_sigterm_handler() -> None:
    """Make SIGTERM raise SystemExit(143) for the rest of the process (call it once, at start-up,
    from the main thread of a command that downloads or extracts)."""
    signal.signal(signal.SIGTERM, _exit)


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143), unless the program chose its own SIGTERM
    handler or this is not the main thread (where Python cannot install one); restored afterwards."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
