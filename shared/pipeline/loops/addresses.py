"""IP addresses: each address's network slot, by geoip2fast's search over sorted networks."""

from __future__ import annotations

import numpy as np
from numba import njit

from shared.pipeline.kernels import ASK, SIGN


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
    networks (the caller asks geoip2fast about those). An IPv4-mapped IPv6 address
    (``::ffff:808:808``) is its IPv4 address, however it is spelt.

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
            elif high == 0 and low >> 32 == 0xFFFF:
                value = low & 0xFFFFFFFF  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d
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
