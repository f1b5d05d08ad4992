"""The ``minids`` command-line application (click)."""
