"""``python -m gateway.devnet_child PARENT_PID PROGRAM ARGS...``: runs a devnet role that
ends with its launcher. The kernel sends the role SIGTERM (a clean stop: a chain
finishes its block, a gateway its uploads) when the launcher dies, even by SIGKILL, so
the next ``make devnet`` finds no stray process holding its ports and databases.

A wrapper, not a ``preexec_fn``: Python cannot promise a function run between fork and
exec in a process with threads; ``prctl`` here, then ``execv``, which keeps the setting.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m gateway.devnet_child PARENT_PID PROGRAM [ARGS...]")
    parent, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:  # the launcher died before the setting took hold
        sys.exit(0)
    os.execv(command[0], command)  # noqa: S606 - the launcher's own command line


if __name__ == "__main__":
    main(sys.argv[1:])
