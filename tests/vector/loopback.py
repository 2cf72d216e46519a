"""A loopback TCP listener that records every connection: proof that nothing called it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class Loopback:
    """Accepts connections on 127.0.0.1, records the first bytes, answers HTTP 404."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, suffix: str = ".tif") -> str:
        """A fresh URL on the listener (GDAL caches answers per URL)."""
        return f"http://127.0.0.1:{self.port}/{uuid.uuid4().hex}{suffix}"

    def connections(self, settle: float = 0.2) -> int:
        """Connections so far, after a moment for any in flight to arrive."""
        time.sleep(settle)
        return len(self.requests)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.requests.append(data)
                with suppress(OSError):
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()


@contextmanager
def loopback() -> Iterator[Loopback]:
    """A :class:`Loopback` for the duration of a test."""
    listener = Loopback()
    try:
        yield listener
    finally:
        listener.close()
