"""Ctrl-C as a request to stop at the next safe point.

Inside ``with StopRequest() as stop:`` the first SIGINT only sets
``stop.requested``; the training loop looks at it after every batch and saves
a checkpoint there. A second Ctrl-C raises KeyboardInterrupt at once (the
file then keeps the last checkpoint written). Outside the main thread,
where Python cannot install signal handlers, Ctrl-C keeps its default
behaviour and ``requested`` stays False.
"""

import signal
import threading


class StopRequest:
    """Context manager; ``requested`` (bool) is True once Ctrl-C was pressed."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False
