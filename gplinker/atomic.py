"""One atomic writer for every file and directory gplinker writes.

A file is written to a temporary sibling, flushed and fsynced, then renamed over the target with
``os.replace``; a directory (a saved model, a checkpoint) is built in a temporary sibling and
swapped in, so a crash at any moment leaves either the previous complete version or the new one,
never a mix. Between the two renames of a directory swap the previous version waits at
``PATH.previous``; :func:`recover_directory` finds it if a crash happened right there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

PREVIOUS_SUFFIX = ".previous"


class SaveError(OSError):
    """A write that failed for want of space: says so, and what survived (the previous version)."""

    def __init__(self, path: str | Path, survived: str) -> None:
        super().__init__(
            errno.ENOSPC,
            f"{path}: could not be written: no space left on device — {survived}; free some "
            "space (or choose another folder) and run it again",
        )

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a full disk or quota; safetensors reports it as text."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(e) or "StorageFull" in str(e) or "QuotaExceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


STDOUT = "-"  # an output path meaning standard output


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0666 less the umask), not mkstemp's 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``, on an
    exception it is removed and ``path`` is left as it was.

    ``-`` is standard output, and a path that is not a regular file (``/dev/null``, a FIFO, a
    terminal) is written directly: a rename would replace the device with a file. A symbolic link
    is followed, so its target is replaced and the link stays. A new file gets the usual mode
    (0666 less the umask), a replaced one keeps its mode."""
    if str(path) == STDOUT:
        yield from _stream_stdout(mode, encoding)
        return
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "") as f:
            yield f
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    file_mode = (path.stat().st_mode & 0o7777) if path.is_file() else _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), file_mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(e):
            raise SaveError(path, "the previous file is intact" if path.exists() else "nothing was written there") from e
        raise


def _stream_stdout(mode: str, encoding: str | None) -> Iterator[IO]:
    import io
    import sys

    if getattr(sys.stdout, "buffer", None) is None:  # a replaced stdout (a notebook, a test capture)
        yield sys.stdout
        return
    if "b" in mode:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    out = io.TextIOWrapper(sys.stdout.buffer, encoding=encoding or "utf-8", newline="", write_through=True)
    try:
        yield out
        out.flush()
    finally:
        out.detach()  # leave sys.stdout open


def write_text(path: str | Path, text: str, errors: str = "strict") -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``errors`` as for ``str.encode`` (a report
    for people may pass ``backslashreplace`` so that a lone surrogate in an id loses nothing)."""
    write_bytes(path, text.encode("utf-8", errors))


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path`` to fill; on success it is fsynced and swapped
    in for ``path`` (the old version is removed afterwards), on an exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    previous = path.with_name(path.name + PREVIOUS_SUFFIX)
    try:
        yield tmp
        _fsync_tree(tmp)
        if previous.exists():
            shutil.rmtree(previous)
        if path.exists():
            os.replace(path, previous)  # a crash from here ...
        os.replace(tmp, path)  # ... to here leaves the complete old version at PATH.previous
        _fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            survived = (
                "the previous version there is intact"
                if path.exists()
                else f"the previous version is intact at {previous}"
                if previous.exists()
                else "nothing was written there"
            )
            raise SaveError(path, survived) from e
        raise
    shutil.rmtree(previous, ignore_errors=True)


def copy_directory(src: str | Path, dst: str | Path) -> None:
    """Copy the folder ``src`` to ``dst`` atomically (:func:`atomic_directory`): ``dst`` is the
    old folder or the whole copy, never half of one."""
    with atomic_directory(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def recover_directory(path: str | Path) -> Path | None:
    """``PATH.previous`` when ``path`` is missing because a directory swap was interrupted."""
    path = Path(path)
    previous = path.with_name(path.name + PREVIOUS_SUFFIX)
    if not path.exists() and previous.is_dir():
        return previous
    return None


class OutputLock:
    """An exclusive lock on an output folder for the length of a job (``train --output``): a
    second job writing to the same folder fails at once instead of silently losing one model."""

    NAME = ".gplinker.lock"

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): fall back to exclusive creation
            os.close(fd)
            try:
                fd = os.open(self.path.with_suffix(".excl"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise ValueError(
                    f"{self.path.parent} is in use by another gplinker job; wait for it or choose another "
                    f"--output (remove {self.path.with_suffix('.excl')} if no job is running)"
                ) from None
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() if hasattr(os, "pread") else "?"
            os.close(fd)
            raise ValueError(
                f"{self.path.parent} is in use by another gplinker job (pid {holder or '?'}); wait for it "
                "or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays (removing it would race a waiting job)
            self._fd = None
        excl = self.path.with_suffix(".excl")
        if excl.exists():
            with contextlib.suppress(OSError):
                excl.unlink()
