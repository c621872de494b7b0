"""``python -m tests.fuzz.fuzz_decode [libFuzzer flags] CORPUS_DIR...``: a coverage-guided
fuzz campaign (atheris, libFuzzer) of the whole decode path.

Every input is decoded as a landed file would be: ``decode.probe``, then ``decode.decode``
with the fast parser under the loops built ahead of time, again under numba's JIT, and
with the straightforward parser. What counts as a finding (the input is saved as a crash):

* any exception but ``QuarantinedFile`` (a segfault, a hang past ``-timeout`` or memory past
  ``-rss_limit_mb`` are libFuzzer's own findings);
* the built loops and the JIT disagreeing, or the two parsers giving different frames (or
  one quarantining the file alone, but for ``crafted.SCAN_ONLY``);
* rows that do not balance: a decoded Avro file's records differ from the probe's count,
  or ``validate`` loses a row.

An input stands for a landed file as ``tests.fuzz.forms`` says.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["shared"]):
    import polars as pl
    from polars.testing import assert_frame_equal

    from shared.contracts import USER_ACTIVITY
    from shared.errors import QuarantinedFile
    from shared.pipeline import decode, kernels
    from shared.pipeline.validate import validate

from tests import crafted
from tests.fuzz.forms import file_of


def _ahead_and_jit() -> tuple[
    tuple[bool, dict[str, Callable[..., Any]]], tuple[bool, dict[str, Callable[..., Any]]]
]:
    built = kernels._loaded()
    if not built[0]:
        raise SystemExit("fuzz: no ahead-of-time build of the loops; run `make kernels` first")
    return built, (False, kernels.numba_loops())


TABLES = _ahead_and_jit()


def _outcome(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except QuarantinedFile as exc:
        return exc


def _frames(data: bytes, name: str, parser: decode.Parser) -> pl.DataFrame | QuarantinedFile:
    def run() -> pl.DataFrame:
        frames = list(decode.decode(io.BytesIO(data), name, USER_ACTIVITY, chunk_rows=64, parser=parser))
        return pl.concat(frames) if frames else pl.DataFrame(schema=decode.parsed_schema(USER_ACTIVITY))

    return _outcome(run)  # type: ignore[no-any-return]


def _use(table: tuple[bool, dict[str, Callable[..., Any]]]) -> None:
    kernels._loaded = lambda: table  # type: ignore[method-assign, assignment]


def check(data: bytes) -> None:
    """Decode one input every way; raise AssertionError on any disagreement."""
    file, name = file_of(data)
    probe = _outcome(lambda: decode.probe(io.BytesIO(file), name))
    results = {}
    for label, table in zip(("ahead", "jit"), TABLES, strict=True):
        _use(table)
        results[label] = _frames(file, name, "fast")
    _use(TABLES[0])
    results["straightforward"] = _frames(file, name, "straightforward")
    ahead = results["ahead"]
    if isinstance(probe, QuarantinedFile):  # what the probe refuses, decoding must refuse too
        assert isinstance(ahead, QuarantinedFile), (probe.reason, ahead.height)
    for label in ("jit", "straightforward"):
        other = results[label]
        if isinstance(ahead, QuarantinedFile) or isinstance(other, QuarantinedFile):
            both = isinstance(ahead, QuarantinedFile) and isinstance(other, QuarantinedFile)
            scan_only = isinstance(ahead, QuarantinedFile) and crafted.SCAN_ONLY in ahead.reason
            assert both or (scan_only and label == "straightforward"), f"fast: {ahead!r}; {label}: {other!r}"
            if label == "jit":
                assert ahead.reason == other.reason, (ahead.reason, other.reason)  # type: ignore[union-attr]
        else:
            assert_frame_equal(ahead, other)
    if isinstance(ahead, QuarantinedFile):
        return
    checked = validate(ahead, USER_ACTIVITY)
    assert checked.valid.height + checked.quarantined.height == ahead.height
    if name.endswith(".avro") and not isinstance(probe, QuarantinedFile):
        assert ahead.get_column("_row").n_unique() == probe.records, (probe, ahead.height)
    elif not isinstance(probe, QuarantinedFile):
        assert ahead.height == probe.records, (probe, ahead.height)


def test_one_input(data: bytes) -> None:
    check(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
