"""``python -m shared.pipeline.aot``: build the loops ahead of time (``make kernels``).

numba's ``pycc`` compiles ``loops`` for ``kernels.SIGNATURES`` into an extension module
beside ``kernels``, named for a digest of the source, so an edited loop is never served
from an old build: ``kernels`` looks only for the module of the current digest and
otherwise compiles with numba at run time. Python tags the file for the platform that
built it; build it on Linux x86-64 with the Functions runtime's Python for it to be used
there. Needs a C compiler.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.pipeline import kernels

HERE = Path(kernels.__file__).parent


def built(directory: Path = HERE) -> Path | None:
    """The current build in ``directory``, if there is one for this Python."""
    import importlib.machinery

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / f"{kernels.module_name()}{suffix}"
        if path.exists():
            return path
    return None


def build(directory: Path = HERE, *, force: bool = False) -> Path:
    """Compile the loops into ``directory``, removing the builds of older sources there."""
    name = kernels.module_name()
    existing = built(directory)
    if existing is not None and not force:
        print(f"kernels: {existing.name} is current", file=sys.stderr)
        return existing
    import warnings

    from numba import types
    from numba.core.errors import NumbaPendingDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)
        from numba.pycc import CC, compiler

        from shared.pipeline import loops

        _release_the_gil(compiler)
        cc = CC(name)
        cc.output_dir = str(directory)
        for loop, (result, arguments) in kernels.SIGNATURES.items():
            source = getattr(loops, kernels.source_of(loop))
            signature = _type(types, result)(*(_type(types, a) for a in arguments))
            cc.export(loop, signature)(source.py_func)
        started = time.perf_counter()
        print(
            f"kernels: compiling {len(kernels.SIGNATURES)} loops into {name} ...", file=sys.stderr, flush=True
        )
        cc.compile()
    path = built(directory)
    if path is None:
        raise RuntimeError(f"pycc produced no {name} module in {directory}")
    for old in directory.glob("_loops_*"):
        if old.is_file() and not old.name.startswith(name):
            old.unlink()
    print(f"kernels: built {path.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def _release_the_gil(compiler: Any) -> None:
    """Make pycc's wrappers release the GIL while a loop runs, as ``nogil=True`` does for
    numba's JIT: bronze decodes in one thread while another validates and writes.

    pycc builds its flags from ``compiler.Flags()`` and offers no option for this; the
    wrapper it then emits is the one numba's JIT uses (``callwrapper``), which honours
    ``release_gil``.
    """
    base = compiler.Flags
    if getattr(base, "tributary_nogil", False):
        return

    class Flags(base):  # type: ignore[misc, valid-type]
        tributary_nogil = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = Flags


def _type(types: Any, spec: Any) -> Any:
    """A numba type for one ``kernels.SIGNATURES`` entry; arrays the loop only reads are read-only."""
    if isinstance(spec, str):
        return types.void if spec == "void" else getattr(types, "boolean" if spec == "bool" else spec)
    dtype = types.boolean if spec[0] == "bool" else getattr(types, spec[0])
    return types.Array(dtype, spec[1], "C", readonly=len(spec) < 3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.pipeline.aot",
        description="Build the pipeline's loops ahead of time into an extension module beside "
        "shared/pipeline/kernels.py, so instances need neither numba nor LLVM at run time.",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=HERE, help="where to write the module (default: %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the current build exists")
    parser.add_argument(
        "--optional",
        action="store_true",
        help="if the build fails (no C compiler, say), say so and exit 0: numba compiles at run time",
    )
    parser.add_argument(
        "--check", action="store_true", help="only report whether a current build exists (exit 1 if not)"
    )
    args = parser.parse_args(argv)
    if args.check:
        path = built(args.output_dir)
        print(f"kernels: {path.name if path else 'no current build for ' + kernels.module_name()}")
        return 0 if path else 1
    try:
        build(args.output_dir, force=args.force)
    except Exception as exc:
        if not args.optional:
            raise
        print(
            f"kernels: not built ({type(exc).__name__}: {exc}); numba will compile the loops at run time",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
