"""Ctrl-C and SIGTERM as a request to stop at the next safe point.

Inside ``with StopRequest() as stop:`` the first SIGINT or SIGTERM (what a
cluster scheduler sends before it kills a job) only sets ``stop.requested``
and ``stop.signal`` (the signal's number); the training loop looks at it after every batch and saves
a checkpoint there. A second Ctrl-C raises KeyboardInterrupt at once (the
file then keeps the last checkpoint written). Outside the main thread,
where Python cannot install signal handlers, Ctrl-C keeps its default
behaviour and ``requested`` stays False. The two signals are unblocked while
the handlers are in place: a process started by one that blocks them (a Ray
worker blocks SIGINT, and a blocked mask is inherited) would otherwise never
see them.
"""

import signal
import threading


class StopRequest:
    """Context manager; ``requested`` (bool) is True once Ctrl-C was pressed."""

    #: the signals that ask for a stop
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signal = None
        self._previous, self._blocked = {}, set()

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
            if hasattr(signal, "pthread_sigmask"):  # POSIX
                self._blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS) & set(self.SIGNALS)
        return self

    def __exit__(self, *exc):
        if self._blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._blocked)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous, self._blocked = {}, set()
        return False
