"""Pick a kernel implementation: the native one or its plain reference.

`TAGFOLD_IMPL` (environment) or an explicit `impl=` argument, one of:
- ``native``: the compiled / JIT kernel; fails loudly when it cannot be imported, so a broken
  build never silently runs the slow path;
- ``ref``: the plain reference (rapidfuzz, NumPy);
- ``auto`` (default): native when importable, else the reference.
An explicit `impl=` argument wins over the environment.
"""
from __future__ import annotations

import importlib
import os

IMPLS = ("native", "ref", "auto")
ENV_VAR = "TAGFOLD_IMPL"
JARO_EXTENSION = "tagfold.native._jaro"


def native_available(module: str = JARO_EXTENSION) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def resolve_impl(impl: str | None = None, *, native_module: str = JARO_EXTENSION) -> str:
    """Return 'native' or 'ref' for `impl` (or $TAGFOLD_IMPL when impl is None).

    native_module is what 'native' needs importable: the Cython extension for Jaro-Winkler,
    'numba' for the L2 kernels.
    """
    source = "impl argument"
    if impl is None:
        impl = os.environ.get(ENV_VAR, "auto")
        source = f"${ENV_VAR}"
    choice = impl.strip().lower()
    if choice not in IMPLS:
        raise ValueError(f"{source}={impl!r}: expected one of {', '.join(IMPLS)}")
    if choice == "ref":
        return "ref"
    try:
        importlib.import_module(native_module)
    except ImportError as err:
        if choice == "auto":
            return "ref"
        raise ImportError(
            f"{source}=native but {native_module} cannot be imported ({err}); "
            "build the kernels with `make install` (needs a C compiler), or set "
            f"{ENV_VAR}=ref to use the reference implementation"
        ) from err
    return "native"
