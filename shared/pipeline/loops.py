"""The compiled loops' source: numba functions over raw bytes and positions.

They take numpy arrays and integers, never Python objects, and release the GIL, so they
run while another thread inflates, validates or writes. ``kernels`` calls them: built
ahead of time into a plain extension module (``python -m shared.pipeline.aot``) when
that module is current, else compiled here by numba on first use and cached
(``NUMBA_CACHE_DIR``), which costs about 5 s on a cold instance and keeps LLVM loaded.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from shared.pipeline.kernels import ASK, SIGN


@njit(nogil=True, cache=True, inline="always")
def _read_long(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """Zigzag varint at ``pos``: (value, next position), or (0, -1) past ``end``."""
    n = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return 0, -1
        b = int(buf[pos])
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    return ((n >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(n & 1), pos


@njit(nogil=True, cache=True)
def _skip(buf: np.ndarray, pos: int, end: int, kind: int) -> int:
    """Position after a value of ``kind``, or -1 past ``end``."""
    if kind == 0:
        _, pos = _read_long(buf, pos, end)
        return pos
    if kind == 1:
        pos += 8
    elif kind == 2:
        pos += 4
    elif kind == 3:
        length, pos = _read_long(buf, pos, end)
        if pos < 0 or length < 0:
            return -1
        pos += length
    elif kind == 5:
        pos += 1
    return pos if pos <= end else -1


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
    """Every record of the blocks: rows decoded, -(1 + row) at a bad row, or -(10**12 + block)."""
    row = 0
    key_length = key.shape[0]
    for block in range(starts.shape[0]):
        pos = starts[block]
        end = ends[block]
        for _ in range(counts[block]):
            value, pos = _read_long(buf, pos, end)
            if pos < 0:
                return -(1 + row)
            sequence[row] = value
            for field in range(2):  # Offset, EnqueuedTimeUtc
                length, pos = _read_long(buf, pos, end)
                if pos < 0 or length < 0 or pos + length > end:
                    return -(1 + row)
                spans[field, 0, row] = pos
                spans[field, 1, row] = length
                pos += length
            has_enqueued[row] = False
            for which in range(2):  # SystemProperties, Properties
                kinds = system_kinds if which == 0 else property_kinds
                while True:
                    items, pos = _read_long(buf, pos, end)
                    if pos < 0:
                        return -(1 + row)
                    if items == 0:
                        break
                    if items < 0:  # a block of -n items is preceded by its size in bytes
                        items = -items
                        size, pos = _read_long(buf, pos, end)
                        if pos < 0:
                            return -(1 + row)
                        if which == 1:
                            pos += size
                            if pos > end:
                                return -(1 + row)
                            continue
                    for _item in range(items):
                        length, pos = _read_long(buf, pos, end)
                        if pos < 0 or length < 0 or pos + length > end:
                            return -(1 + row)
                        name = pos
                        pos += length
                        branch, pos = _read_long(buf, pos, end)
                        if pos < 0 or branch < 0 or branch >= kinds.shape[0]:
                            return -(1 + row)
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
                                    return -(1 + row)
                                enqueued[row] = value
                                has_enqueued[row] = True
                                continue
                            has_enqueued[row] = False  # a later entry wins, as in a dict
                        pos = _skip(buf, pos, end, kind)
                        if pos < 0:
                            return -(1 + row)
            if body_null >= 0:
                branch, pos = _read_long(buf, pos, end)
                if pos < 0 or branch < 0 or branch > 1:
                    return -(1 + row)
                if branch == body_null:
                    spans[2, 0, row] = pos
                    spans[2, 1, row] = -1
                    row += 1
                    continue
            length, pos = _read_long(buf, pos, end)
            if pos < 0 or length < 0 or pos + length > end:
                return -(1 + row)
            spans[2, 0, row] = pos
            spans[2, 1, row] = length
            pos += length
            row += 1
        if pos != end:
            return -(10**12 + block)
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


# -- JSON objects --------------------------------------------------------------------------


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


# -- addresses -----------------------------------------------------------------------------


@njit(nogil=True, cache=True, inline="always")
def _ipv4(buf: np.ndarray, start: int, end: int) -> int:
    """A dotted-quad address (no leading zeros) as an int, or -1."""
    value = 0
    octet = 0
    digits = 0
    dots = 0
    for i in range(start, end):
        c = buf[i]
        if 48 <= c <= 57:
            if digits > 0 and octet == 0:  # a leading zero
                return -1
            octet = octet * 10 + (c - 48)
            digits += 1
            if octet > 255:
                return -1
        elif c == 46 and digits > 0 and dots < 3:  # .
            value = value * 256 + octet
            octet = 0
            digits = 0
            dots += 1
        else:
            return -1
    if dots != 3 or digits == 0:
        return -1
    return value * 256 + octet


@njit(nogil=True, cache=True, inline="always")
def _hex(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


@njit(nogil=True, cache=True)
def _ipv6(buf: np.ndarray, start: int, end: int, words: np.ndarray) -> bool:
    """Fill ``words`` with the eight groups of a hexadecimal IPv6 address (at most one
    ``::``); False for anything else, an IPv4 tail or a zone included."""
    n = 0
    gap = -1
    pos = start
    if end - start >= 2 and buf[pos] == 58 and buf[pos + 1] == 58:  # leading ::
        gap = 0
        pos += 2
    elif end - start < 2 or buf[pos] == 58:
        return False
    while pos < end:
        value = 0
        digits = 0
        while pos < end and digits < 5:
            h = _hex(buf[pos])
            if h < 0:
                break
            value = value * 16 + h
            digits += 1
            pos += 1
        if digits == 0 or digits > 4 or n == 8:
            return False
        words[n] = value
        n += 1
        if pos == end:
            break
        if buf[pos] != 58 or pos + 1 == end:  # not ':', or a trailing single ':'
            return False
        pos += 1
        if buf[pos] == 58:  # ::
            if gap >= 0:
                return False
            gap = n
            pos += 1
    if gap < 0:
        return n == 8
    if n > 7:
        return False
    for i in range(n - 1, gap - 1, -1):  # the groups after :: go to the end
        words[i + 8 - n] = words[i]
    for i in range(gap, gap + 8 - n):
        words[i] = 0
    return True


@njit(nogil=True, cache=True, inline="always")
def _last_at_or_before(first: np.ndarray, value: int) -> int:
    lo, hi = 0, first.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if first[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(nogil=True, cache=True, inline="always")
def _last_at_or_before2(first_hi: np.ndarray, first_lo: np.ndarray, hi_value: int, lo_value: int) -> int:
    lo, hi = 0, first_hi.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if first_hi[mid] < hi_value or (first_hi[mid] == hi_value and first_lo[mid] <= lo_value):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(nogil=True, cache=True)
def address_slots(
    buf: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    v4: np.ndarray,
    v4_slot: np.ndarray,
    v6: np.ndarray,
    v6_slot: np.ndarray,
    slots: np.ndarray,
) -> None:
    """The network slot of each address: the last network starting at or before it, if
    the address is inside it; 0 for none or a null; ``ASK`` for text that is neither a
    dotted IPv4 nor a hexadecimal IPv6 address, or an IPv6 address below the IPv6
    networks (the caller asks geoip2fast about those).

    ``v4[0]``/``v4[1]`` hold each IPv4 network's first and last address; ``v6[0..3]``
    each IPv6 network's first (high, low) and last (high, low) halves, sign-flipped.
    """
    words = np.zeros(8, dtype=np.int64)
    for row in range(offsets.shape[0] - 1):
        slots[row] = 0
        if not valid[row]:
            continue
        start, end = offsets[row], offsets[row + 1]
        value = _ipv4(buf, start, end)
        if value < 0:
            if not _ipv6(buf, start, end, words):
                slots[row] = ASK
                continue
            high = (words[0] << 48) | (words[1] << 32) | (words[2] << 16) | words[3]
            low = (words[4] << 48) | (words[5] << 32) | (words[6] << 16) | words[7]
            if high == 0 and 0 <= low < 2**32:
                value = low  # geoip2fast searches these among the IPv4 networks
            else:
                high ^= SIGN
                low ^= SIGN
                at = _last_at_or_before2(v6[0], v6[1], high, low)
                if at < 0:
                    slots[row] = ASK
                elif v6[2, at] > high or (v6[2, at] == high and v6[3, at] >= low):
                    slots[row] = v6_slot[at]
                continue
        at = _last_at_or_before(v4[0], value)
        if at >= 0 and value <= v4[1, at]:
            slots[row] = v4_slot[at]


def warm() -> None:
    """Compile (or load from numba's cache) every loop for the argument types ``kernels`` passes."""
    data = np.frombuffer(b"\x02\x00\x00\x00\x00\x02{}", dtype=np.uint8)
    n = np.ones(1, dtype=np.int64)
    kinds = np.zeros(1, dtype=np.int64)
    scan_capture(
        data, np.zeros(1, np.int64), np.array([len(data)], np.int64), n, kinds, kinds, -1,
        np.frombuffer(b"k", np.uint8), np.empty(1, np.int64), np.empty((3, 2, 1), np.int64),
        np.empty(1, np.int64), np.empty(1, np.bool_),
    )  # fmt: skip
    gather(data, np.zeros(1, np.int64), np.ones(1, np.int64), np.empty(2, np.int64), np.empty(1, np.uint8))
    gather(data, np.zeros(1, np.int64), np.ones(1, np.int64), np.empty(2, np.int32), np.empty(1, np.uint8))
    names = np.frombuffer(b"k", np.uint8)
    offsets = np.frombuffer(np.array([0, len(data)], np.int64).tobytes(), np.int64)  # read-only, as Arrow's
    scan_objects(
        data, offsets, np.ones(1, np.bool_), names, np.array([0, 1], np.int64),
        np.zeros((2, 1, 1), np.int64), np.zeros((1, 1), np.int8), np.zeros(1, np.bool_),
    )  # fmt: skip
    networks = np.zeros((4, 1), np.int64)
    address_slots(
        data, offsets, np.ones(1, np.bool_), networks[:2], np.zeros(1, np.int32), networks,
        np.zeros(1, np.int32), np.empty(1, np.int32),
    )  # fmt: skip
