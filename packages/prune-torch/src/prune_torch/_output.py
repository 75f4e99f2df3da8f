"""Where the command line writes: checked before any work, replaced atomically, never half-written.

A destination is one of

- standard output (``-``),
- something that is not a regular file (a terminal, ``/dev/null``, a pipe), written through,
- a regular file, new or replaced (with ``force``) by renaming a finished copy over it.

A symlink is followed: the file it points to is written (atomically when it is a regular file)
and the link itself stays. The finished copy is staged from the start, in the destination's own
folder, so "can I create a file there?" is answered by the operating system before the work, and
an interrupted or failed run removes it and leaves the destination as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from prune_torch._models import SpecError

__all__ = ["Destination"]

STDOUT = "-"
_DESCRIPTOR = re.compile(r"^/(dev|proc/[^/]+)/fd/\d+$")


def _names_a_descriptor(path: Path) -> bool:
    """Whether ``path`` is, or leads by symlinks to, an entry of /dev/fd or /proc/<pid>/fd."""
    for _ in range(40):  # the kernel's own limit on symlink hops
        if _DESCRIPTOR.match(str(path)):
            return True
        if not path.is_symlink():
            return False
        path = path.parent / os.readlink(path)
    return False


def _same_file(path: Path, stream: object) -> bool:
    try:
        return os.path.samestat(path.stat(), os.fstat(stream.fileno()))  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):  # a stream without a descriptor (captured in tests)
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Destination:
    """One output of a command; use as a context manager, ``write_*`` inside, ``commit`` at the end.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with Destination(str(folder / "out.txt"), "--out") as out:
    ...     out.write_text("hello")
    ...     out.commit()
    >>> (folder / "out.txt").read_text()
    'hello'
    """

    def __init__(self, spec: str, option: str, *, force: bool = False, stdout_ok: bool = False) -> None:
        self.spec = spec
        self.option = option
        self.to_stdout = spec == STDOUT
        self._stage: Path | None = None
        self._mode: int | None = None
        if self.to_stdout:
            if not stdout_ok:
                raise SpecError(f"{option} - (standard output) is not possible here; give a file name")
            self.target = None
            self.through = True
            return
        path = Path(spec)
        try:
            info = path.stat()  # follows symlinks: what the path names in the end
        except FileNotFoundError:
            info = None
        except OSError as error:
            raise SpecError(f"cannot write {spec!r}: {error.strerror}") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise SpecError(f"cannot write {spec!r}: it is a folder")
        # a terminal, /dev/null, a pipe, or an open file descriptor (/dev/stdout, /dev/fd/3: the
        # shell's redirection already chose the file) is written through
        self.through = (info is not None and not stat.S_ISREG(info.st_mode)) or _names_a_descriptor(path)
        # a regular file (or a new one) is replaced by rename: the rename goes to the file a
        # symlink names, so that the link itself stays a link
        self.target = path if self.through else Path(os.path.realpath(path))
        if self.through:
            if not os.access(path, os.W_OK):
                raise SpecError(f"cannot write {spec!r}: permission denied")
            if _same_file(path, sys.stdout) and not stdout_ok:
                raise SpecError(f"{option} {spec} is standard output, which is not possible here; give a file name")
            return
        if info is not None:
            if not force:
                raise SpecError(f"{spec!r} exists; pass --force to replace it")
            self._mode = stat.S_IMODE(info.st_mode)
        folder = self.target.parent
        if not folder.is_dir():
            raise SpecError(f"cannot write {spec!r}: folder {str(path.parent)!r} does not exist")
        self._stage = self._make_stage(folder, self.target)

    def _make_stage(self, folder: Path, target: Path) -> Path:
        # the suffix stays last so that writers which pick a format by extension (savefig) keep it
        try:
            handle, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=f".partial{target.suffix}", dir=folder)
        except OSError as error:
            raise SpecError(
                f"cannot write {self.spec!r}: cannot create files in {str(folder)!r} ({error.strerror})"
            ) from None
        os.close(handle)
        return Path(name)

    # -- writing -----------------------------------------------------------------------------------
    def write_text(self, text: str) -> None:
        """The whole output, as text."""
        self.write_with(lambda path: path.write_text(text, encoding="utf-8"))

    def write_with(self, writer: Callable[[Path], object]) -> None:
        """Let ``writer(path)`` write the whole output to a file (a staging copy; see ``commit``)."""
        if self._stage is None:  # stdout or a device: stage in the temp folder, copy on commit
            handle, name = tempfile.mkstemp(prefix="prune-torch-", suffix=Path(self.spec).suffix)
            os.close(handle)
            self._stage = Path(name)
        writer(self._stage)

    def commit(self) -> None:
        """Make the written output the destination's content."""
        if self._stage is None:
            raise RuntimeError("nothing was written")
        stage, self._stage = self._stage, None
        try:
            if self.to_stdout:
                sys.stdout.flush()
                with stage.open("rb") as source:
                    shutil.copyfileobj(source, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            elif self.target is None:
                raise RuntimeError("a file destination without a target")
            elif self.through:
                with stage.open("rb") as source, self.target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
            else:
                os.chmod(stage, self._mode if self._mode is not None else 0o666 & ~_umask())
                with stage.open("rb") as written:
                    os.fsync(written.fileno())
                os.replace(stage, self.target)
        finally:
            stage.unlink(missing_ok=True)

    def discard(self) -> None:
        """Forget what was written; the destination stays as it was."""
        if self._stage is not None:
            self._stage.unlink(missing_ok=True)
            self._stage = None

    def __enter__(self) -> Destination:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.discard()  # after commit there is nothing left to discard
