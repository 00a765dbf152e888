"""Network namespaces of our own, for tests where traffic must cross a real network stack.

mDNS goes out only inside them: a namespace starts with nothing but its own loopback,
which we give multicast; nothing reaches the machine's real interfaces.  Creating one
needs root (CAP_SYS_ADMIN); :func:`unavailable` says why not, for a clear skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

_counter = itertools.count()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)


def unavailable() -> str | None:
    """None if namespaces can be made here, else the reason they cannot."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"p2p-probe-{os.getpid()}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "delete", probe)
    return None


class Namespace:
    """``ip netns add`` with loopback up and multicast on; :meth:`delete` removes it."""

    def __init__(self) -> None:
        self.name = f"p2p-test-{os.getpid()}-{next(_counter)}"
        for args in (
            ("netns", "add", self.name),
            ("-n", self.name, "link", "set", "lo", "up"),
            ("-n", self.name, "link", "set", "lo", "multicast", "on"),
            ("-n", self.name, "route", "add", "224.0.0.0/4", "dev", "lo"),
        ):
            done = _ip(*args)
            if done.returncode != 0:
                self.delete()
                raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def delete(self) -> None:
        _ip("netns", "delete", self.name)


class NodeProcess:
    """`p2p-prophet serve` in a namespace; a thread collects its stderr line by line
    (select() on a buffered pipe would miss lines already read into the buffer)."""

    def __init__(self, ns: Namespace, replica: Path, *options: str) -> None:
        self.process = subprocess.Popen(
            ns.command(sys.executable, "-m", "p2p_prophet", "-R", str(replica), "serve", *options),
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self.wait_for("serving replica").rsplit(" at ", 1)[1].strip()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, needle: str, count: int = 1, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            matching = [line for line in list(self.lines) if needle in line]
            if len(matching) >= count:
                return matching[count - 1]
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {needle!r} (x{count}) from the node: {self.log}")
            time.sleep(0.05)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode
