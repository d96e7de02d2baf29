"""What every role does with its data directory: durable writes (readers see the old
file or the whole new one), and a directory and files no other local user can read.
"""

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "PRIVATE_DIRECTORY",
    "PRIVATE_FILE",
    "fsync_directory",
    "private_database",
    "private_directory",
    "private_file",
    "private_opener",
    "write_atomically",
]

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def fsync_directory(directory: Path) -> None:
    # A rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def private_directory(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: made 0700 (its missing parents
    with the usual mode), and an existing one, made by an older version or by hand,
    changed to 0700 when it is this user's own and not a shared one like /tmp."""
    # SECURITY: indexes, databases and spools hold every user's names and metadata.
    path.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    found = path.stat()
    # A sticky directory is shared on purpose (the files in it are still 0600).
    if found.st_uid == os.getuid() and not found.st_mode & stat.S_ISVTX:
        os.chmod(path, PRIVATE_DIRECTORY)  # mkdir's mode passes through the umask
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner may read: created empty 0600 if missing, an
    existing one changed to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


def private_database(path: Path) -> Path:
    """A SQLite database file made private before it is opened: SQLite creates its
    ``-wal`` and ``-shm`` files with the database file's mode, so they follow; ones left
    by an older version are changed too."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):  # none while no connection is open
            os.chmod(path.with_name(path.name + suffix), PRIVATE_FILE)
    return path


def private_opener(path: str, flags: int) -> int:
    """``open(..., opener=private_opener)``: a file created 0600."""
    return os.open(path, flags, PRIVATE_FILE)
