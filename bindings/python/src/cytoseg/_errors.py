"""Exceptions raised by cytoseg, one per C status code (``cytoseg_status`` in cytoseg.h).

Every class derives from :class:`CytosegError` and, where one fits, from the built-in
exception a Python caller would expect (``ValueError`` for bad arguments, ``OSError`` for
files, ``RuntimeError`` for the runtime), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class CytosegError(Exception):
    """An error reported by the cytoseg engine.

    Attributes:
        status: the ``cytoseg_status`` code (``CYTOSEG_STATUS_*`` in cytoseg.h).
        status_name: the engine's English name for the code.
        message: the engine's message naming the problem.
    """

    status: int = -1

    def __init__(self, message: str, status: int | None = None, status_name: str = ""):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.status_name = status_name
        self.message = message

    def __str__(self) -> str:
        # the engine's messages often start with the status name already
        if not self.status_name or self.message.startswith(self.status_name):
            return self.message
        return f"{self.status_name}: {self.message}"


class InvalidArgumentError(CytosegError, ValueError):
    """An argument is missing, out of range or inconsistent (statuses 100 and 101)."""

    status = 101


class ShapeMismatchError(CytosegError, ValueError):
    """Buffer lengths or array shapes do not agree (status 102)."""

    status = 102


class NonFiniteError(CytosegError, ValueError):
    """The input holds NaN or infinite values (status 103)."""

    status = 103


class TooLargeError(CytosegError, ValueError):
    """The input is larger than the engine supports (status 104)."""

    status = 104


class ModelError(CytosegError):
    """A model package is missing, corrupt or inconsistent with its manifest (status 200)."""

    status = 200


class OnnxRuntimeError(CytosegError, RuntimeError):
    """ONNX Runtime or the requested device is unavailable or failed (status 201)."""

    status = 201


class CytosegIOError(CytosegError, OSError):
    """A file could not be read or written (status 300)."""

    status = 300


class FormatError(CytosegError, ValueError):
    """A file's contents are not in a supported format (status 301)."""

    status = 301


class CancelledError(CytosegError):
    """The operation was cancelled through its progress callback (status 400)."""

    status = 400


class InternalError(CytosegError, RuntimeError):
    """A bug inside the engine, caught at its boundary; the library stays usable (status 900)."""

    status = 900


#: Exception class for each ``cytoseg_status`` code (``CYTOSEG_STATUS_<NAME>``).
EXCEPTIONS_BY_STATUS: dict[int, type[CytosegError]] = {
    100: InvalidArgumentError,  # NULL_POINTER: a bug in the binding or a closed object
    101: InvalidArgumentError,
    102: ShapeMismatchError,
    103: NonFiniteError,
    104: TooLargeError,
    200: ModelError,
    201: OnnxRuntimeError,
    300: CytosegIOError,
    301: FormatError,
    400: CancelledError,
    900: InternalError,
}

#: The header's status names (``CYTOSEG_STATUS_<NAME>``) for each code; tests compare it with
#: include/cytoseg.h so that a new code cannot go unmapped.
STATUS_NAMES: dict[int, str] = {
    0: "OK",
    100: "NULL_POINTER",
    101: "INVALID_ARGUMENT",
    102: "SHAPE_MISMATCH",
    103: "NON_FINITE",
    104: "TOO_LARGE",
    200: "MODEL",
    201: "RUNTIME",
    300: "IO",
    301: "FORMAT",
    400: "CANCELLED",
    900: "PANIC",
}


def error_for(status: int, message: str, status_name: str) -> CytosegError:
    """The exception for a failed call: the class mapped to ``status`` (``CytosegError`` for a
    code this binding does not know yet), carrying the engine's message."""
    cls = EXCEPTIONS_BY_STATUS.get(status, CytosegError)
    return cls(message, status=status, status_name=status_name)
