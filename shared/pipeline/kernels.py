"""The compiled loops, as the pipeline calls them, and the Arrow arrays cut from their output.

The loops' source is ``loops`` (numba). ``python -m shared.pipeline.aot`` (``make
kernels``) builds it ahead of time into an extension module beside this file, named for a
digest of that source and tagged by Python for its platform; an instance that imports it
needs neither numba nor LLVM, which saves about 100 MB of memory and a 5 s compile on a
cold start. Without a current module for this platform, the same source runs through
numba's JIT, which keeps its own cache (``NUMBA_CACHE_DIR``).

This module imports neither numba nor the loops until a loop is first called.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

# What a JSON field holds, in ``scan_objects``' ``kinds``.
ABSENT, STRING, NUMBER, LITERAL, NULL = 0, 1, 2, 3, 4
# IPv6 halves are compared as int64 with the sign bit flipped, which orders them as
# unsigned: numba turns mixed uint64/int64 arithmetic into floats.
SIGN = np.int64(-(2**63))
ASK = -1  # an address slot the caller looks up itself
# Why ``scan_capture`` stopped: a problem with one of ``SCAN_FIELDS`` of a record, packed
# into its negative answer as -(1 + place * SCAN_PLACE + problem * SCAN_PROBLEM + field).
SCAN_FIELDS = ("SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Properties", "Body")
# The loops' varint reader answers TRUNCATED or OVERLONG as 0 or 1: keep them first.
TRUNCATED, OVERLONG, NEGATIVE, PAST_END, BRANCH, LEFTOVER = range(6)
SCAN_PROBLEMS = {
    TRUNCATED: "{field} is cut off by the end of the block",
    OVERLONG: "{field} holds a varint longer than the 10 bytes of a long",
    NEGATIVE: "{field} has a negative length or count",
    PAST_END: "{field} claims more bytes than the block has left",
    BRANCH: "{field} names a union branch the schema does not have",
    LEFTOVER: "bytes left over after the block's records",
}
SCAN_PROBLEM, SCAN_PLACE = 8, 64

# Each loop's result and arguments: (dtype, dimensions) for an array, "out" where the loop
# writes it, or a dtype for a scalar. The ahead-of-time build exports exactly these, and
# its calls are checked against them (a compiled module trusts its arguments blindly).
_U8, _I64, _BOOL = ("uint8", 1), ("int64", 1), ("bool", 1)
SIGNATURES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "scan_capture": (
        "int64",
        (_U8, _I64, _I64, _I64, _I64, _I64, "int64", _U8,
         ("int64", 1, "out"), ("int64", 3, "out"), ("int64", 1, "out"), ("bool", 1, "out")),
    ),
    "gather": ("void", (_U8, _I64, _I64, ("int64", 1, "out"), ("uint8", 1, "out"))),
    "gather32": ("void", (_U8, _I64, _I64, ("int32", 1, "out"), ("uint8", 1, "out"))),
    "scan_objects": (
        "void",
        (_U8, _I64, _BOOL, _U8, _I64, ("int64", 3, "out"), ("int8", 2, "out"), ("bool", 1, "out")),
    ),
    "address_slots": (
        "void",
        (_U8, _I64, _BOOL, ("int64", 2), ("int32", 1), ("int64", 2), ("int32", 1), ("int32", 1, "out")),
    ),
}  # fmt: skip
# The loops' source and the build that compiles it: a change to either names a new module.
SOURCES = (*sorted(Path(__file__).with_name("loops").glob("*.py")), Path(__file__).with_name("aot.py"))


def module_name() -> str:
    """The ahead-of-time module's name: a digest of the loops, their build, their signatures
    and numba's version."""
    digest = hashlib.sha256()
    for source in SOURCES:
        digest.update(source.read_bytes())
    digest.update(repr(sorted(SIGNATURES.items())).encode())
    digest.update(version("numba").encode())
    return f"_loops_{digest.hexdigest()[:16]}"


def _checked(name: str, loop: Callable[..., Any]) -> Callable[..., Any]:
    """``loop`` from the ahead-of-time module, its arguments checked first: a wrong dtype
    or layout there would read or write the wrong memory rather than raise."""
    spec = [(np.dtype(a[0]), a[1], len(a) > 2) if isinstance(a, tuple) else None for a in SIGNATURES[name][1]]

    def call(*args: Any) -> Any:
        if len(args) != len(spec):
            raise TypeError(f"{name} takes {len(spec)} arguments, not {len(args)}")
        for i, (arg, want) in enumerate(zip(args, spec, strict=True)):
            if want is None:
                continue
            dtype, ndim, out = want
            if not (
                isinstance(arg, np.ndarray)
                and arg.dtype == dtype
                and arg.ndim == ndim
                and arg.flags.c_contiguous
                and (arg.flags.writeable or not out)
            ):
                got = f"{arg.dtype}[{arg.ndim}]" if isinstance(arg, np.ndarray) else type(arg).__name__
                raise TypeError(f"{name} argument {i}: wants a C-contiguous {dtype}[{ndim}], got {got}")
        return loop(*args)

    call.__name__ = name
    return call


def source_of(name: str) -> str:
    """The function in ``loops`` a signature compiles: ``gather32`` is ``gather`` with 32-bit offsets."""
    return "gather" if name == "gather32" else name


def numba_loops() -> dict[str, Callable[..., Any]]:
    """The loops compiled by numba's JIT (imports numba and LLVM)."""
    from shared.pipeline import loops

    return {name: getattr(loops, source_of(name)) for name in SIGNATURES}


def built_loops(module: ModuleType) -> dict[str, Callable[..., Any]]:
    """The loops of an ahead-of-time module, each checking its arguments."""
    return {name: _checked(name, getattr(module, name)) for name in SIGNATURES}


@cache
def _loaded() -> tuple[bool, dict[str, Callable[..., Any]]]:
    """(ahead of time?, each loop by name), settled on first use."""
    name = module_name()
    try:
        built = importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        log.info("kernels: no built module %s for this platform; numba compiles the loops", name)
        return False, numba_loops()
    log.info("kernels: ahead-of-time module %s", name)
    return True, built_loops(built)


def _loops() -> dict[str, Callable[..., Any]]:
    return _loaded()[1]


def ahead_of_time() -> bool:
    """Whether the loops come from the ahead-of-time module."""
    return _loaded()[0]


def warm() -> None:
    """Load the loops now, as a warm instance has: compiled, or loaded from numba's cache."""
    if not ahead_of_time():
        from shared.pipeline import loops

        loops.warm()


def scan_capture(*args: Any) -> int:
    """Every Capture record of the blocks; see ``loops.scan_capture``."""
    return int(_loops()["scan_capture"](*args))


def scan_failure(answer: int) -> tuple[int, str]:
    """A negative ``scan_capture`` answer as (record, or block for leftover bytes; what is wrong)."""
    place, code = divmod(-answer - 1, SCAN_PLACE)
    problem, field = divmod(code, SCAN_PROBLEM)
    return place, SCAN_PROBLEMS[problem].format(field=SCAN_FIELDS[field])


def scan_objects(*args: Any) -> None:
    """Each field's value in flat JSON bodies; see ``loops.scan_objects``."""
    _loops()["scan_objects"](*args)


def address_slots(*args: Any) -> None:
    """Each address's network slot; see ``loops.address_slots``."""
    _loops()["address_slots"](*args)


def cut(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, kind: pa.DataType) -> pa.Array:
    """An Arrow binary or string array of the byte ranges of ``buffer`` (length -1 is null)."""
    valid = lengths >= 0
    total = int(lengths[valid].sum())
    wide = kind in (pa.large_binary(), pa.large_string())
    if not wide and total >= 2**31:
        raise OverflowError("chunk too large for 32-bit offsets")
    offsets = np.empty(len(starts) + 1, dtype=np.int64 if wide else np.int32)
    values = np.empty(total, dtype=np.uint8)
    _loops()["gather" if wide else "gather32"](buffer, starts, lengths, offsets, values)
    mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        kind,
        len(starts),
        [mask, pa.py_buffer(offsets), pa.py_buffer(values)],
        null_count=-1 if mask is not None else 0,
    )


def int64_array(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """An Arrow int64 array over ``values`` without a copy.

    ``pa.array`` would do the same but first imports pandas when it is installed (the
    benchmark's environment has it; a Function app does not), which costs ~50 MB.
    """
    values = np.ascontiguousarray(values, dtype=np.int64)
    mask = None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.int64(), len(values), [mask, pa.py_buffer(values)], null_count=-1)


def validity(array: pa.Array) -> np.ndarray:
    """True where ``array`` holds a value, read from its bitmap (no pandas, see above)."""
    bitmap = array.buffers()[0]
    if bitmap is None:
        return np.ones(len(array), dtype=np.bool_)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(np.bool_)
