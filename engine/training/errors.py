"""The training engine's error: a run that cannot train."""


class TrainError(RuntimeError):
    """A run that cannot train (one line: what and why)."""
