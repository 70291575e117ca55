"""The caller's side: a bearer token in a file the kubelet rotates.

kfn's components prove who they are to each other with projected ServiceAccount tokens, each
made for one audience (the trigger workers' for ``kfn``, the activator's for ``kfn-stats``).
The kubelet writes a new token well before the old one expires (at 80 % of its life) by
swapping the file, so a sender reads it again when its modification time changed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Final

#: How often a token file is looked at again for a rotated token.
RECHECK: Final = 10.0


class TokenFile:
    """A bearer token in a file the kubelet rotates (a projected ServiceAccount token):
    read again when its modification time changed, looked at every :data:`RECHECK`
    seconds at most. Safe to share between threads; ``OSError`` when it cannot be read."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._mtime = -1.0
        self._checked = float("-inf")

    def __call__(self) -> str:
        with self._lock:
            now = self.clock()
            if now - self._checked >= RECHECK or not self._token:
                self._checked = now
                mtime = os.stat(self.path).st_mtime
                if mtime != self._mtime:
                    with open(self.path, encoding="ascii") as file:
                        self._token = file.read().strip()
                    self._mtime = mtime
            return self._token
