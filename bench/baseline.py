"""tornado-chat at another commit, as one more target: ``--baseline-ref REV``.

REV is checked out with ``git worktree add --detach`` into a temporary directory, and that checkout's
server runs as ``python -m tornado_chat`` from that directory with it first on ``PYTHONPATH`` (the
directory is the server's working directory too: ``python -m`` puts the working directory ahead of
``PYTHONPATH``). The flags are the tornado-chat target's. The worktree is removed, by its path, when the
run ends, however it ends short of a SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# The checkout this bench runs from: the repository whose history REV is looked up in.
REPO = Path(__file__).resolve().parent.parent


class BaselineError(Exception):
    """REV cannot be checked out (not a commit, not a git checkout, git missing)."""


@dataclass
class Baseline:
    """One checked-out commit."""

    ref: str
    commit: str
    short: str
    path: Path
    event_loop_flag: bool = True  # whether that commit's server knows --event-loop

    @property
    def name(self) -> str:
        return f"tornado-chat@{self.short}"

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": os.pathsep.join(p for p in (str(self.path), os.environ.get("PYTHONPATH", "")) if p)}


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False, timeout=120)
    except OSError as exc:
        raise BaselineError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        raise BaselineError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def _knows_event_loop(baseline: Baseline) -> bool:
    """Whether that commit's server takes --event-loop (added after the bench was; older ones run on asyncio)."""
    done = subprocess.run(
        [sys.executable, "-m", "tornado_chat", "--help"],
        cwd=baseline.path,
        env={**os.environ, **baseline.env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return "--event-loop" in done.stdout


def _remove(path: Path, log: Callable[[str], None]) -> None:
    try:
        _git("worktree", "remove", "--force", str(path))
    except BaselineError as exc:
        log(f"could not remove the worktree {path}: {exc}")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def checked_out(refs: Sequence[str], log: Callable[[str], None]) -> Iterator[list[Baseline]]:
    """A worktree per REV for the duration of the block; each removed afterwards."""
    made: list[Baseline] = []
    try:
        for ref in refs:
            commit = _git("rev-parse", "--verify", "--end-of-options", ref + "^{commit}")
            short = _git("rev-parse", "--short", commit)
            if any(b.commit == commit for b in made):
                continue
            path = Path(tempfile.mkdtemp(prefix=f"chat-bench-{short}-"))
            log(f"checking out {ref} ({short}) into {path}")
            try:
                _git("worktree", "add", "--detach", "--quiet", str(path), commit)
            except BaselineError:
                shutil.rmtree(path, ignore_errors=True)
                raise
            baseline = Baseline(ref, commit, short, path)
            made.append(baseline)
            baseline.event_loop_flag = _knows_event_loop(baseline)
        yield made
    finally:
        for baseline in made:
            _remove(baseline.path, log)
