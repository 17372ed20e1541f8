"""Holding Ctrl-C (SIGINT) and SIGTERM back while files that belong together are written.

After every epoch the training loop writes its state, the checkpoint, the metrics CSV
and the figure. An interrupt between two of these writes would leave files that do not
match (a checkpoint without the state to resume it); :func:`held_interrupts` lets the
writes finish and delivers the interrupt right after them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Postpone SIGINT and SIGTERM until the block ends, then deliver the first one.

    Only signals whose handler is a Python function (Python's own Ctrl-C handler,
    :func:`~geoglacier.io.atomic.sigterm_as_interrupt`) are held; an ignored signal or
    one left to the operating system is not touched. The handlers are restored on the
    way out, and the held signal goes to its own handler then, which raises
    ``KeyboardInterrupt``. If the block itself raises, that exception goes on and the
    held signal is dropped (the run is ending anyway). Only the main thread can set
    handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in HELD_SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                previous[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        previous[received[0]](received[0], None)
