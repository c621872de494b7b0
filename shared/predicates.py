"""Delta predicates built from batch values (ids, times, partition values), quoted safely.

delta-rs takes predicates as SQL text; every value that reaches one passes through
``sql_literal``, so no value can end its literal early (a test holds one with a quote in it).
"""

from __future__ import annotations


def sql_in(column: str, values: list[str]) -> str:
    """``column IN ('a', 'b')`` with the values quoted as SQL string literals."""
    quoted = ", ".join(sql_literal(v) for v in values)
    return f"{column} IN ({quoted})"


def sql_literal(value: str) -> str:
    """A SQL string literal: quotes doubled, so no value can end the literal early."""
    return "'" + value.replace("'", "''") + "'"


__all__ = ["sql_in", "sql_literal"]
