"""The progress bar (gateway/progress.py): drawn when its stream is a terminal, or when
forced; never otherwise. A pty stands for the terminal, a pipe for redirected stderr."""

import argparse
import os
import pty
from collections.abc import Iterator
from typing import TextIO

import pytest

from gateway.client import add_progress_option
from gateway.progress import Progress, human_bytes


def _read(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except (BlockingIOError, OSError):  # nothing more; a pty master may say EIO
        pass
    return b"".join(chunks).decode()


@pytest.fixture
def terminal() -> Iterator[tuple[TextIO, int]]:
    """A stream on a pty's terminal side, and the pty's master to read what it got."""
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    yield stream, master
    stream.close()
    os.close(master)


@pytest.fixture
def pipe() -> Iterator[tuple[TextIO, int]]:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    yield stream, read_end
    stream.close()
    os.close(read_end)


def _run(stream: TextIO, enabled: bool | None) -> None:
    progress = Progress(4 * 2**20, "put", enabled=enabled, stream=stream)
    for _ in range(4):
        progress.advance(2**20)
    progress.finish()
    stream.flush()


def test_default_draws_on_a_terminal(terminal: tuple[TextIO, int]) -> None:
    stream, master = terminal
    assert stream.isatty()
    _run(stream, None)
    shown = _read(master)
    assert "put [########################] 100%" in shown
    assert "4.0 MiB / 4.0 MiB" in shown
    assert shown.startswith("\r") and shown.rstrip().endswith("/s")


def test_default_draws_nothing_on_a_pipe(pipe: tuple[TextIO, int]) -> None:
    stream, read_end = pipe
    assert not stream.isatty()
    _run(stream, None)
    assert _read(read_end) == ""


def test_forced_on_draws_on_a_pipe(pipe: tuple[TextIO, int]) -> None:
    stream, read_end = pipe
    _run(stream, True)
    shown = _read(read_end)
    assert "\rput [" in shown and "100%" in shown and shown.endswith("\n")
    assert "\x1b" not in shown  # no terminal escapes in what may be a log file


def test_forced_off_draws_nothing_on_a_terminal(terminal: tuple[TextIO, int]) -> None:
    stream, master = terminal
    _run(stream, False)
    assert _read(master) == ""


def test_stderr_is_the_default_stream(
    pipe: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, read_end = pipe
    monkeypatch.setattr("sys.stderr", stream)
    progress = Progress(10, "get", enabled=True)
    progress.advance(10)
    progress.finish()
    stream.flush()
    assert "get [" in _read(read_end)


def test_a_count_without_a_total_has_no_bar(pipe: tuple[TextIO, int]) -> None:
    stream, read_end = pipe
    progress = Progress(None, "scrub", unit="fragments", enabled=True, stream=stream)
    for _ in range(7):
        progress.advance(1)
    progress.finish()
    stream.flush()
    shown = _read(read_end)
    assert "scrub 7 fragments" in shown and "[" not in shown


def test_a_resumed_transfer_starts_at_what_was_stored(pipe: tuple[TextIO, int]) -> None:
    stream, read_end = pipe
    progress = Progress(100, "put", start=60, enabled=True, stream=stream)
    progress.update(100)
    progress.finish()
    stream.flush()
    assert " 100%  100 B / 100 B" in _read(read_end)


def test_a_shorter_line_covers_the_longer_one_before(pipe: tuple[TextIO, int]) -> None:
    stream, read_end = pipe
    progress = Progress(None, "recover", unit="files", enabled=True, stream=stream)
    progress.width = 80  # as if a long line had been drawn
    progress.update(1)
    stream.flush()
    line = _read(read_end)
    assert len(line) == 1 + 80 and line.startswith("\rrecover 1 files")


def test_the_progress_flags() -> None:
    parser = argparse.ArgumentParser()
    add_progress_option(parser)
    assert parser.parse_args([]).progress is None
    assert parser.parse_args(["--progress"]).progress is True
    assert parser.parse_args(["--no-progress"]).progress is False


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3 * 2**30 // 2, "1.5 GiB")],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text
