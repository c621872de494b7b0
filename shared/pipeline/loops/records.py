"""Capture records: the Avro scan that finds each value's place, and the gather that cuts them."""

from __future__ import annotations

import numpy as np
from numba import njit

from shared.pipeline.kernels import (
    BRANCH,
    LEFTOVER,
    NEGATIVE,
    PAST_END,
    SCAN_PLACE,
    SCAN_PROBLEM,
    TRUNCATED,
)


@njit(nogil=True, cache=True, inline="always")
def _read_long(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """Zigzag varint at ``pos``: (value, next position), or (problem, -1): ``TRUNCATED``
    past ``end``, ``OVERLONG`` past the 10 bytes of a 64-bit varint.

    One exit with a constant position: told apart by position (-1, -2), the loop ran at
    two thirds of the speed.
    """
    n = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return shift >> 6, -1  # 0 (TRUNCATED) while shift <= 63, then 1 (OVERLONG)
        b = int(buf[pos])
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return ((n >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(n & 1), pos


@njit(nogil=True, cache=True)
def _skip(buf: np.ndarray, pos: int, end: int, kind: int) -> int:
    """Position after a value of ``kind``, or -1 - its problem."""
    if kind == 0:
        problem, pos = _read_long(buf, pos, end)
        return pos if pos >= 0 else -1 - problem
    if kind == 1:
        size = 8
    elif kind == 2:
        size = 4
    elif kind == 3:
        size, pos = _read_long(buf, pos, end)
        if pos < 0:
            return -1 - size
        if size < 0:
            return -1 - NEGATIVE
    elif kind == 5:
        size = 1
    else:
        size = 0
    return pos + size if size <= end - pos else -1 - TRUNCATED


@njit(nogil=True, cache=True)
def _length_problem(pos: int, length: int) -> int:
    """Why a length failed its check: ``_read_long``'s problem, or its sign or size."""
    if pos < 0:
        return length
    return NEGATIVE if length < 0 else PAST_END


@njit(nogil=True, cache=True, inline="always")
def _failed(place: int, problem: int, field: int) -> int:
    """``scan_capture``'s answer for a record (or block) it cannot read; see ``kernels.SCAN_FIELDS``."""
    return -(1 + place * SCAN_PLACE + problem * SCAN_PROBLEM + field)


@njit(nogil=True, cache=True)
def scan_capture(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    counts: np.ndarray,
    system_kinds: np.ndarray,
    property_kinds: np.ndarray,
    body_null: int,
    key: np.ndarray,
    sequence: np.ndarray,
    spans: np.ndarray,
    enqueued: np.ndarray,
    has_enqueued: np.ndarray,
) -> int:
    """Every record of the blocks: the rows decoded, or (negative) where and why it stopped.

    Nothing read from the file is trusted: every length, count and size is checked
    against the bytes left in its block before it moves a position (``x > end - pos``,
    which cannot overflow), so no input reads outside ``buf`` or loops. (A
    SystemProperties block's size moves nothing: its entries are read, as fastavro reads
    them.) Strings are compared as bytes, never decoded. A failure is
    ``-(1 + place * SCAN_PLACE + problem * SCAN_PROBLEM + field)``: the record (counting
    across blocks) and the field, or for ``LEFTOVER`` the block; ``kernels.scan_failure``
    reads it.
    """
    row = 0
    key_length = key.shape[0]
    for block in range(starts.shape[0]):
        pos = starts[block]
        end = ends[block]
        for _ in range(counts[block]):
            value, pos = _read_long(buf, pos, end)
            if pos < 0:
                return _failed(row, value, 0)
            sequence[row] = value
            for field in range(2):  # Offset, EnqueuedTimeUtc
                length, pos = _read_long(buf, pos, end)
                if pos < 0 or length < 0 or length > end - pos:
                    return _failed(row, _length_problem(pos, length), 1 + field)
                spans[field, 0, row] = pos
                spans[field, 1, row] = length
                pos += length
            has_enqueued[row] = False
            for which in range(2):  # SystemProperties, Properties
                kinds = system_kinds if which == 0 else property_kinds
                while True:
                    items, pos = _read_long(buf, pos, end)
                    if pos < 0:
                        return _failed(row, items, 3 + which)
                    if items == 0:
                        break
                    if items < 0:  # a block of -n items is preceded by its size in bytes
                        items = -items
                        size, pos = _read_long(buf, pos, end)
                        if pos < 0:
                            return _failed(row, size, 3 + which)
                        if items < 0:  # -(-2**63) is itself
                            return _failed(row, NEGATIVE, 3 + which)
                        if which == 1:  # Properties is skipped by the size; SystemProperties read
                            if size < 0 or size > end - pos:
                                return _failed(row, _length_problem(pos, size), 4)
                            pos += size
                            continue
                    for _item in range(items):
                        length, pos = _read_long(buf, pos, end)
                        if pos < 0 or length < 0 or length > end - pos:
                            return _failed(row, _length_problem(pos, length), 3 + which)
                        name = pos
                        pos += length
                        branch, pos = _read_long(buf, pos, end)
                        if pos < 0 or branch < 0 or branch >= kinds.shape[0]:
                            return _failed(row, BRANCH if pos >= 0 else branch, 3 + which)
                        kind = kinds[branch]
                        wanted = which == 0 and length == key_length
                        if wanted:
                            for i in range(key_length):
                                if buf[name + i] != key[i]:
                                    wanted = False
                                    break
                        if wanted:
                            if kind == 0:
                                value, pos = _read_long(buf, pos, end)
                                if pos < 0:
                                    return _failed(row, value, 3)
                                enqueued[row] = value
                                has_enqueued[row] = True
                                continue
                            has_enqueued[row] = False  # a later entry wins, as in a dict
                        pos = _skip(buf, pos, end, kind)
                        if pos < 0:
                            return _failed(row, -1 - pos, 3 + which)
            if body_null >= 0:
                branch, pos = _read_long(buf, pos, end)
                if pos < 0 or branch < 0 or branch > 1:
                    return _failed(row, BRANCH if pos >= 0 else branch, 5)
                if branch == body_null:
                    spans[2, 0, row] = pos
                    spans[2, 1, row] = -1
                    row += 1
                    continue
            length, pos = _read_long(buf, pos, end)
            if pos < 0 or length < 0 or length > end - pos:
                return _failed(row, _length_problem(pos, length), 5)
            spans[2, 0, row] = pos
            spans[2, 1, row] = length
            pos += length
            row += 1
        if pos != end:
            return _failed(block, LEFTOVER, 0)
    return row


@njit(nogil=True, cache=True)
def gather(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, values: np.ndarray
) -> None:
    """Copy the byte ranges into ``values`` back to back; ``offsets`` gets where each starts."""
    at = 0
    for i in range(starts.shape[0]):
        offsets[i] = at
        length = lengths[i]
        if length > 0:
            values[at : at + length] = buf[starts[i] : starts[i] + length]
            at += length
    offsets[starts.shape[0]] = at
