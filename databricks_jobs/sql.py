r"""The contract's SQL text, as Spark must be given it to mean what polars reads.

The expectations are written once, in the SQL polars' ``pl.sql_expr`` parses. Spark's
parser reads the same text differently in two places, so the text is translated here,
token by token, never rewritten by hand:

* **String literals.** polars keeps backslashes as written and reads ``''`` as a quote;
  Spark unescapes backslashes (``'\\x00'`` becomes ``x00`` and ``'\\.'`` becomes ``.``, so
  ``[\\x00-\\x1f]`` and the IP regex would silently match other text) and reads ``''`` as
  two literals glued together. Inside literals, backslashes are doubled and ``''``
  becomes ``\\'``.
* **Regex anchors.** Rust's ``$`` (polars' ``REGEXP_LIKE``) matches only at the end of
  the text; Java's also matches before a final line terminator, so ``'1.2.3.4\n'`` would
  pass ``ip_address_valid``. In a ``REGEXP_LIKE`` pattern an anchoring ``$`` becomes ``\z``.
* **TRIM.** polars' ``TRIM(x)`` strips every Unicode White_Space character (Rust's
  ``char::is_whitespace``); Spark's strips spaces only, so ``user_id = "\\t"`` would pass
  ``user_id_required``. ``TRIM(x)``, ``LTRIM(x)`` and ``RTRIM(x)`` become the
  ``TRIM(BOTH|LEADING|TRAILING '<those characters>' FROM x)`` form.

Everything else the contracts use (``LENGTH`` in characters, ``REGEXP_LIKE`` as a search,
``IN``, ``BETWEEN``, ``CAST(... AS TIMESTAMP)`` in the session's UTC, ``INTERVAL``) means
the same in both engines; ``tests/spark/test_contract_sql.py`` holds every expectation to
polars' answer on the cases that tell them apart.
"""

from __future__ import annotations

#: The characters polars' TRIM strips: Unicode White_Space, as Rust's ``char::is_whitespace``
#: reads it (not Python's ``str.isspace``, which adds U+001C-U+001F). A test compares it
#: with polars over every code point.
POLARS_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_TRIMS = {"TRIM": "BOTH", "LTRIM": "LEADING", "RTRIM": "TRAILING"}


def for_spark(sql: str) -> str:
    """``sql`` (a contract expression, polars' dialect) as Spark SQL with the same meaning.

    Raises:
        ValueError: a string literal or a TRIM call is not closed.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'":
            literal, i = _literal(sql, i)
            out.append(_spark_literal(literal))
            continue
        word = _word_at(sql, i)
        if word and word.upper() == "REGEXP_LIKE" and _next_char(sql, i + len(word)) == "(":
            start = sql.index("(", i + len(word))
            end = _closing(sql, start)
            subject, pattern = _split_arguments(sql[start + 1 : end])
            literal, after = _literal(pattern.strip(), 0)
            if after != len(pattern.strip()):
                raise ValueError(f"REGEXP_LIKE needs a literal pattern: {sql!r}")
            out.append(f"REGEXP_LIKE({for_spark(subject)}, {_spark_literal(java_regex(literal))})")
            i = end + 1
            continue
        if word and word.upper() in _TRIMS and _next_char(sql, i + len(word)) == "(":
            start = sql.index("(", i + len(word))
            end = _closing(sql, start)
            inner = for_spark(sql[start + 1 : end])
            chars = "'" + "".join(f"\\u{ord(ch):04x}" for ch in POLARS_WHITESPACE) + "'"
            out.append(f"TRIM({_TRIMS[word.upper()]} {chars} FROM {inner})")
            i = end + 1
            continue
        if word:
            out.append(word)
            i += len(word)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def java_regex(pattern: str) -> str:
    """A Rust regex (what polars runs) as the Java regex that matches the same texts.

    Only ``$`` differs for the contracts' patterns (see the module docstring); escapes
    and character classes are kept as written.
    """
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append("\\z" if c == "$" and not in_class else c)
        i += 1
    return "".join(out)


def _split_arguments(arguments: str) -> tuple[str, str]:
    """A two-argument call's arguments (commas inside literals or parentheses ignored)."""
    depth, i = 0, 0
    while i < len(arguments):
        c = arguments[i]
        if c == "'":
            _, i = _literal(arguments, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            return arguments[:i], arguments[i + 1 :]
        i += 1
    raise ValueError(f"expected two arguments in {arguments!r}")


def _literal(sql: str, start: int) -> tuple[str, int]:
    """The value of the polars string literal opening at ``start``, and the index after it."""
    value: list[str] = []
    i = start + 1
    while i < len(sql):
        if sql[i] == "'":
            if sql.startswith("''", i):
                value.append("'")
                i += 2
                continue
            return "".join(value), i + 1
        value.append(sql[i])
        i += 1
    raise ValueError(f"unterminated string literal in {sql!r}")


def _spark_literal(value: str) -> str:
    """``value`` as a Spark string literal (backslash escapes on, the default)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _word_at(sql: str, i: int) -> str:
    if not (sql[i].isalpha() or sql[i] == "_") or (i and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
        return ""
    j = i
    while j < len(sql) and (sql[j].isalnum() or sql[j] == "_"):
        j += 1
    return sql[i:j]


def _next_char(sql: str, i: int) -> str:
    while i < len(sql) and sql[i].isspace():
        i += 1
    return sql[i] if i < len(sql) else ""


def _closing(sql: str, start: int) -> int:
    """The index of the parenthesis closing the one at ``start`` (literals skipped)."""
    depth, i = 0, start
    while i < len(sql):
        c = sql[i]
        if c == "'":
            _, i = _literal(sql, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed parenthesis in {sql!r}")
