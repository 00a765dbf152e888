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

    def __init__(self, *, multicast_on_lo: bool = True) -> None:
        self.name = f"p2p-test-{os.getpid()}-{next(_counter)}"
        steps: list[tuple[str, ...]] = [
            ("netns", "add", self.name),
            ("-n", self.name, "link", "set", "lo", "up"),
        ]
        if multicast_on_lo:
            steps += [
                ("-n", self.name, "link", "set", "lo", "multicast", "on"),
                ("-n", self.name, "route", "add", "224.0.0.0/4", "dev", "lo"),
            ]
        for args in steps:
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


class Lan:
    """Hosts on a LAN of their own: one namespace per host, each joined by a veth pair to
    a bridge that lives in a namespace of its own, hosts numbered 198.18.0.1, .2, ...
    (the benchmarking range, RFC 2544).  Multicast crosses the bridge, so mDNS works
    between hosts exactly as on a real LAN, and reaches nothing else."""

    def __init__(self, hosts: int) -> None:
        tag = f"{os.getpid() % 10000}{next(_counter)}"
        self.bridge = Namespace(multicast_on_lo=False)
        self.hosts: list[Namespace] = []
        self.addresses: list[str] = []
        try:
            b = self.bridge.name
            self._run("-n", b, "link", "add", "br0", "type", "bridge")
            self._run("-n", b, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            self._run("-n", b, "link", "set", "br0", "up")
            for i in range(hosts):
                host = Namespace(multicast_on_lo=False)
                self.hosts.append(host)
                outside, inside = f"v{tag}h{i}", f"v{tag}p{i}"
                address = f"198.18.0.{i + 1}"
                self._run("link", "add", outside, "type", "veth", "peer", "name", inside)
                self._run("link", "set", outside, "netns", b)
                self._run("link", "set", inside, "netns", host.name)
                self._run("-n", b, "link", "set", outside, "master", "br0")
                self._run("-n", b, "link", "set", outside, "up")
                self._run("-n", host.name, "link", "set", inside, "name", "eth0")
                self._run("-n", host.name, "addr", "add", f"{address}/24", "dev", "eth0")
                self._run("-n", host.name, "link", "set", "eth0", "up", "multicast", "on")
                self._run("-n", host.name, "route", "add", "224.0.0.0/4", "dev", "eth0")
                self.addresses.append(address)
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _run(*args: str) -> None:
        done = _ip(*args)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def delete(self) -> None:
        for host in self.hosts:
            host.delete()  # takes its end of the veth pair, and so the pair, with it
        self.bridge.delete()


class Avahi:
    """A real avahi-daemon on one host of a :class:`Lan`, with a private D-Bus system bus
    of its own (avahi-browse and avahi-publish talk to the daemon over D-Bus)."""

    def __init__(self, host: Namespace, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        bus = workdir / "bus"
        system_conf = Path("/usr/share/dbus-1/system.conf").read_text()
        (workdir / "bus.conf").write_text(
            system_conf.replace("<user>messagebus</user>", "")
            .replace("<pidfile>/run/dbus/pid</pidfile>", "")
            .replace("unix:path=/run/dbus/system_bus_socket", f"unix:path={bus}")
            .replace(
                "<includedir>system.d</includedir>",
                "<includedir>/usr/share/dbus-1/system.d</includedir>",
            )
        )
        (workdir / "avahi.conf").write_text(
            "[server]\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\nenable-dbus=yes\n"
            "[wide-area]\nenable-wide-area=no\n"
            "[publish]\npublish-hinfo=no\npublish-workstation=no\n"
        )
        self.host = host
        self.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"}
        self.bus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={workdir / 'bus.conf'}", "--nofork"],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not bus.exists():
            if time.monotonic() > deadline:
                self.bus.kill()
                raise RuntimeError("the private D-Bus did not start")
            time.sleep(0.05)
        self.daemon = subprocess.Popen(
            host.command(
                "avahi-daemon",
                "--no-drop-root",
                "--no-chroot",
                "--no-rlimits",
                "-f",
                str(workdir / "avahi.conf"),
            ),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 15
        while not any("Server startup complete" in line for line in list(self.lines)):
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                self.stop()
                raise RuntimeError(f"avahi-daemon did not start: {''.join(self.lines)}")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.daemon.stdout is not None
        for line in self.daemon.stdout:
            self.lines.append(line)

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """An avahi client command on the daemon's host."""
        return subprocess.run(
            self.host.command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.host.command(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> None:
        for process in (self.daemon, self.bus):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
