"""What a benchmark ran on, printed beside its figures."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
