"""Running a foreign store's own program (``task``, ``fossil``), bounded and with clear
errors: a missing program, a timeout or a refusal becomes :class:`ForeignError` carrying
the program's own words."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from p2p_prophet.foreign.adapter import ForeignError

TIMEOUT_S = 60.0  # no foreign command runs longer; a hung program is an error, not a hang


def run(
    argv: Sequence[str],
    *,
    what: str,
    package: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run ``argv`` and return its standard output; raise :class:`ForeignError` saying
    ``what`` failed if it cannot start, runs too long, or exits non-zero."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise ForeignError(
            f"{what}: the `{argv[0]}` program is not installed (Debian: apt-get install {package})"
        ) from None
    except subprocess.TimeoutExpired:
        raise ForeignError(f"{what}: `{argv[0]}` did not finish in {TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise ForeignError(f"{what}: cannot run `{argv[0]}`: {exc.strerror}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        detail = "; ".join(said[-3:]) if said else "no message"
        how = (
            f"was killed by signal {-done.returncode}"
            if done.returncode < 0
            else f"exited with status {done.returncode}"
        )
        raise ForeignError(f"{what}: `{argv[0]}` {how}: {detail}")
    return done.stdout
