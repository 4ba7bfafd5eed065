"""A deadline for a wait that cannot be interrupted from inside its own process.

TensorFlow's multi-worker start-up waits in C++ for every task of the cluster, holding the
interpreter: no Python thread, timer or signal handler of that process runs until it returns,
and it installs its own SIGTERM handler. :func:`deadline` therefore starts a small watcher
process (this module, run with ``python -m``; it imports nothing heavy). If the block has not
ended within its seconds, the watcher names the peers that do not accept a connection on
stderr, in the command's one-line error form, and ends the waiting process with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def deadline(seconds: float, message: str, peers: dict[str, str]) -> Iterator[None]:
    """Ends this process if the block has not returned after ``seconds``.

    Args:
      seconds: How long the block may take.
      message: What the error line says; `` (missing: ...)`` is added, naming each of
        ``peers`` that does not accept a TCP connection then.
      peers: ``{name: "host:port"}`` of the processes the block waits for.
    """
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            __name__,
            str(os.getpid()),
            repr(float(seconds)),
            prog,
            message,
            json.dumps(peers),
        ],
        stdin=subprocess.PIPE,
    )
    try:
        yield
    finally:
        watcher.stdin.close()  # End of input: the block is over, the watcher leaves.
        watcher.wait()


def unreachable(peers: dict[str, str], timeout: float = 1.0) -> list[str]:
    """The names (with addresses) of ``peers`` that do not accept a TCP connection now."""
    missing = []
    for name, address in peers.items():
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except (OSError, ValueError):
            missing.append(f"{name} at {address}")
    return missing


def _watch(parent: int, seconds: float, prog: str, message: str, peers: dict[str, str]) -> None:
    """The watcher: waits for its input to end, or for ``seconds``, then acts."""
    ended, _, _ = select.select([sys.stdin], [], [], seconds)
    if ended:
        return
    missing = ", ".join(unreachable(peers)) or "none refuses a connection, one never joined"
    sys.stderr.write(f"{prog}: error: {message} (missing: {missing})\n")
    sys.stderr.flush()
    with contextlib.suppress(ProcessLookupError):
        os.kill(parent, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
