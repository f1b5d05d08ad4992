"""The one exception type the command line turns into a one-line error."""


class MinidsError(Exception):
    """A user-facing error: bad input, missing files, invalid options, divergence.

    The message is a single line that says what is wrong and, where possible,
    what to do about it. ``cli`` prints it as ``Error: <message>`` and exits 1.
    """
