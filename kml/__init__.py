"""kml: a reproduction of Kernel Modulation (KML, NeurIPS 2021) and its multimodal meta-learning baselines."""

__version__ = "0.1.0"

# Canonical order of the modes, as fixed by the released MMAML code (docs/specification.md §1.1).
MODES = ("omniglot", "miniimagenet", "fc100", "cub", "aircraft")


class KmlError(Exception):
    """An error the user can fix; its message names the file or key and says how. The CLI prints it without a
    traceback."""


class Interrupted(KmlError):
    """A command stopped by a signal, having saved what it could; the CLI exits with 128 + the signal's
    number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_status = 128 + signal_number
