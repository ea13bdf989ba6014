"""User-facing errors.

Every error a user can cause (bad data, bad settings, a missing file, a circuit that blows up)
is an :class:`EADSError` whose message is one full sentence naming the argument, the value and
what is allowed. The CLI prints that sentence and exits with code 2; it never shows a traceback
for these.
"""


class EADSError(Exception):
    """A problem with the user's input or settings, explained in one sentence."""


class DataError(EADSError, ValueError):
    """The data is missing, malformed, of the wrong shape, or holds NaN/inf."""


class ConfigError(EADSError, ValueError):
    """A setting is out of its allowed range or names something unknown."""


class UnstableCircuitError(EADSError, RuntimeError):
    """A node voltage blew up (non-finite or beyond the rail) while the circuit annealed."""


class CheckpointError(EADSError, OSError):
    """A run directory or checkpoint is missing, incomplete or corrupt."""


class MissingExtraError(EADSError, ImportError):
    """An optional dependency (an extra such as ``llm``, or a model wheel) is not installed."""


class SpiceError(EADSError, RuntimeError):
    """ngspice is missing, failed, timed out, or wrote output that cannot be read."""
