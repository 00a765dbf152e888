"""A stranger on the LAN, for tests/test_mdns.py: run inside a test namespace, never on
the machine's interfaces.

    python mdns_stranger.py ADDRESS

It browses ``_prophet._tcp`` with python-zeroconf on the interface holding ADDRESS, as
any program on the LAN could, and also records every mDNS packet multicast on that
interface.  On stdout, one JSON document a line:

- ``{"ready": true}`` once it listens;
- for each service it resolves (again at each update): its instance name, host name
  (server), port, addresses, TXT properties and the TXT record's raw bytes (hex);
- ``{"removed": NAME}`` when a service says goodbye;
- for each line read from stdin: ``{"cache": [{"name", "record", "data", "text"}, ...]}``,
  every record in zeroconf's cache now (``text`` is a TXT record's raw bytes in hex);
- when its stdin closes: everything it heard, ``{"packets": [hex, ...], "cache": [...]}``,
  and it exits.
"""

from __future__ import annotations

import json
import queue
import socket
import struct
import sys
import threading
from typing import Any

from zeroconf import (
    DNSAddress,
    DNSPointer,
    DNSService,
    DNSText,
    ServiceBrowser,
    ServiceStateChange,
    Zeroconf,
)

SERVICE_TYPE = "_prophet._tcp.local."
GROUP, PORT = "224.0.0.251", 5353


_emitting = threading.Lock()  # zeroconf's handler thread emits too


def emit(document: dict[str, Any]) -> None:
    with _emitting:
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()


def sniff(address: str, packets: list[bytes]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", PORT))
    mreq = struct.pack("4s4s", socket.inet_aton(GROUP), socket.inet_aton(address))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    while True:
        packets.append(sock.recv(9000))


def record_data(record: Any) -> str:
    if isinstance(record, DNSService):
        return f"{record.server}:{record.port}"
    if isinstance(record, DNSPointer):
        return record.alias
    if isinstance(record, DNSAddress):
        return socket.inet_ntop(
            socket.AF_INET6 if len(record.address) == 16 else socket.AF_INET, record.address
        )
    return ""


def main(address: str) -> None:
    packets: list[bytes] = []
    threading.Thread(target=sniff, args=(address, packets), daemon=True).start()
    names: queue.Queue[str | None] = queue.Queue()

    def handler(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            emit({"removed": name})  # a goodbye
        else:
            names.put(name)

    def read_commands() -> None:
        for _ in sys.stdin:
            names.put("")  # a snapshot of the cache, please
        names.put(None)

    zc = Zeroconf(interfaces=[address])
    browser = ServiceBrowser(zc, SERVICE_TYPE, handlers=[handler])
    threading.Thread(target=read_commands, daemon=True).start()
    emit({"ready": True})
    while (name := names.get()) is not None:
        if not name:
            emit({"cache": cached(zc)})
            continue
        info = zc.get_service_info(SERVICE_TYPE, name, 3000)
        if info is None:
            continue
        emit(
            {
                "name": info.name,
                "server": info.server,
                "port": info.port,
                "addresses": info.parsed_addresses(),
                "properties": {
                    k.decode(errors="replace"): (v or b"").decode(errors="replace")
                    for k, v in (info.properties or {}).items()
                },
                "text": (info.text or b"").hex(),
            }
        )
    browser.cancel()
    emit({"packets": [p.hex() for p in list(packets)], "cache": cached(zc)})
    zc.close()


def cached(zc: Zeroconf) -> list[dict[str, str]]:
    return [
        {
            "name": record.name,
            "record": repr(record),
            "data": record_data(record),
            "text": record.text.hex() if isinstance(record, DNSText) else "",
        }
        for name in zc.cache.names()
        for record in zc.cache.entries_with_name(name)
    ]


if __name__ == "__main__":
    main(sys.argv[1])
