"""Checkpoints that a crash, Ctrl-C or kill cannot corrupt.

A checkpoint is written to a temporary file in the same directory, flushed to disk and renamed over
the old one: rename is atomic on POSIX, so a reader sees the old file or the new one, never half of
either. Contents are plain containers of tensors and numbers, loadable with torch.load's safe
`weights_only=True` default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

FORMAT_VERSION = 1


def save(state: dict[str, Any], path: Path) -> None:
    import torch  # here, so that rlrun-tune and rlrun-bench write their files atomically without loading torch

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, "wb", lambda f: torch.save({"format_version": FORMAT_VERSION, **state}, f))
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text(path: Path, text: str) -> None:
    """Write a text file the same way: a reader (or a resume after a kill or a full disk) sees the old
    version or the new one, never a torn one."""
    replace_atomically(path, "w", lambda f: f.write(text))


def replace_atomically(path: Path, mode: str, write: Callable[[IO], Any]) -> None:
    """`write` into a temporary file beside `path` (named after this process: several may write the same
    file), flushed to disk, then renamed over `path`; the temporary file is removed if anything fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
