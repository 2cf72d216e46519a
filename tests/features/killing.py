"""A feature-store writer killed (SIGKILL) in the middle of its COPY, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).parents[2]
PRELUDE = """
import os, signal, sys
import psycopg
from geoetl.engine.db import make_engine
from geoetl.features import postgis
from geoetl.features.postgis import PostgisStore

original = psycopg.Copy.write
count = 0

def write(self, data):
    global count
    count += 1
    if count == WRITES:
        sys.stdout.write("killing\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, data)

psycopg.Copy.write = write
store = PostgisStore(make_engine(sys.argv[1]))
"""


def kill_mid_copy(pg_url: str, writes: int, body: str) -> None:
    """Run ``body`` (with ``store``, ``postgis``) until its ``writes``-th COPY write: killed.

    The first write is the COPY's header, each later one a batch of rows.
    """
    script = PRELUDE.replace("WRITES", str(writes)) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script, pg_url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr
    assert "killing" in done.stdout
