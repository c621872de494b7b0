"""Flat JSON objects: where each field's value token is, in the bodies whose form allows it."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def _space(buf: np.ndarray, pos: int, end: int) -> int:
    """Position after JSON whitespace (space, tab, LF, CR only)."""
    while pos < end and (buf[pos] == 32 or buf[pos] == 9 or buf[pos] == 10 or buf[pos] == 13):
        pos += 1
    return pos


@njit(nogil=True, cache=True, inline="always")
def _plain_string(buf: np.ndarray, pos: int, end: int) -> int:
    """Position of the closing quote of a string opened before ``pos``, or -1.

    -1 also for an escape or a control character inside: those take the builder.
    """
    while pos < end:
        c = buf[pos]
        if c == 34:
            return pos
        if c == 92 or c < 32:
            return -1
        pos += 1
    return -1


@njit(nogil=True, cache=True, inline="always")
def _digits(buf: np.ndarray, pos: int, end: int) -> int:
    while pos < end and 48 <= buf[pos] <= 57:
        pos += 1
    return pos


@njit(nogil=True, cache=True)
def _number(buf: np.ndarray, pos: int, end: int) -> int:
    """End of a JSON number token at ``pos`` (RFC 8259 grammar), or -1."""
    if pos < end and buf[pos] == 45:  # -
        pos += 1
    if pos >= end:
        return -1
    if buf[pos] == 48:  # a leading 0 stands alone
        pos += 1
    elif 49 <= buf[pos] <= 57:
        pos = _digits(buf, pos + 1, end)
    else:
        return -1
    if pos < end and buf[pos] == 46:  # .
        after = _digits(buf, pos + 1, end)
        if after == pos + 1:
            return -1
        pos = after
    if pos < end and (buf[pos] == 101 or buf[pos] == 69):  # e E
        pos += 1
        if pos < end and (buf[pos] == 43 or buf[pos] == 45):
            pos += 1
        after = _digits(buf, pos, end)
        if after == pos:
            return -1
        pos = after
    return pos


@njit(nogil=True, cache=True, inline="always")
def _word(buf: np.ndarray, pos: int, end: int, word: np.ndarray) -> bool:
    if pos + word.shape[0] > end:
        return False
    for i in range(word.shape[0]):
        if buf[pos + i] != word[i]:
            return False
    return True


@njit(nogil=True, cache=True)
def scan_objects(
    buf: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    names: np.ndarray,
    name_offsets: np.ndarray,
    spans: np.ndarray,
    kinds: np.ndarray,
    ok: np.ndarray,
) -> None:
    """Find each field's value token in bodies that are one flat JSON object of known keys.

    A row is ``ok`` when its body is a single object whose keys are distinct field names
    (any order, at least one) and whose values are each a string without escapes or
    control characters, a number, ``true``, ``false`` or ``null``, with JSON whitespace
    anywhere between tokens. For those rows ``kinds[f, row]`` says what field ``f`` holds
    and ``spans[:, f, row]`` where its text is (a string's without the quotes). Every
    other row is left to the caller's general parser.
    """
    true = np.array([116, 114, 117, 101], dtype=np.uint8)
    false = np.array([102, 97, 108, 115, 101], dtype=np.uint8)
    null = np.array([110, 117, 108, 108], dtype=np.uint8)
    fields = name_offsets.shape[0] - 1
    for row in range(offsets.shape[0] - 1):
        ok[row] = False
        for f in range(fields):
            kinds[f, row] = 0
        if not valid[row]:
            continue
        end = offsets[row + 1]
        pos = _space(buf, offsets[row], end)
        if pos >= end or buf[pos] != 123:  # {
            continue
        pos = _space(buf, pos + 1, end)
        good = False
        while pos < end and buf[pos] == 34:  # a key
            close = _plain_string(buf, pos + 1, end)
            if close < 0:
                break
            field = -1
            for f in range(fields):
                size = name_offsets[f + 1] - name_offsets[f]
                if size == close - pos - 1:
                    same = True
                    for i in range(size):
                        if buf[pos + 1 + i] != names[name_offsets[f] + i]:
                            same = False
                            break
                    if same:
                        field = f
                        break
            if field < 0 or kinds[field, row] != 0:
                break
            pos = _space(buf, close + 1, end)
            if pos >= end or buf[pos] != 58:  # :
                break
            pos = _space(buf, pos + 1, end)
            if pos >= end:
                break
            c = buf[pos]
            if c == 34:
                close = _plain_string(buf, pos + 1, end)
                if close < 0:
                    break
                kinds[field, row] = 1
                spans[0, field, row] = pos + 1
                spans[1, field, row] = close - pos - 1
                pos = close + 1
            elif c == 45 or 48 <= c <= 57:
                after = _number(buf, pos, end)
                if after < 0:
                    break
                kinds[field, row] = 2
                spans[0, field, row] = pos
                spans[1, field, row] = after - pos
                pos = after
            elif _word(buf, pos, end, true) or _word(buf, pos, end, false):
                size = 4 if c == 116 else 5
                kinds[field, row] = 3
                spans[0, field, row] = pos
                spans[1, field, row] = size
                pos += size
            elif _word(buf, pos, end, null):
                kinds[field, row] = 4
                pos += 4
            else:
                break
            pos = _space(buf, pos, end)
            if pos < end and buf[pos] == 44:  # ,
                pos = _space(buf, pos + 1, end)
                continue
            if pos < end and buf[pos] == 125:  # }
                good = _space(buf, pos + 1, end) == end
            break
        ok[row] = good
