"""Reading files that may be truncated, corrupt or hostile: every decoder failure becomes one
DataError line that names the file (images and volumes alike)."""

from __future__ import annotations

import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from unetkit.errors import DataError

# What decoders raise on truncated, corrupt or unsupported files (fuzzing found tifffile raising
# TypeError on a corrupt tag; a crafted header can ask for more memory than there is).
DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, NotImplementedError, TypeError,
    AttributeError, RuntimeError, OverflowError, ZeroDivisionError, MemoryError, struct.error, zlib.error,
)  # fmt: skip


@contextmanager
def decoding(path: Path, kind: str = "image") -> Iterator[None]:
    """Turn any decoder failure into a DataError that names the file (``cannot read <kind> <path>``)."""
    try:
        yield
    except DataError:
        raise
    except DECODE_ERRORS as error:
        raise DataError(f"cannot read {kind} {path}: {str(error) or type(error).__name__}") from error
    except Exception as error:  # nibabel's own errors (ImageFileError, HeaderDataError) have no common base
        if type(error).__module__.startswith("nibabel"):
            raise DataError(f"cannot read {kind} {path}: {error}") from error
        raise
