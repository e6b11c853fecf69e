"""Native kernels (Cython Jaro-Winkler, Numba L2), each beside its plain reference.

Import the kernels from their modules (`tagfold.native.jaro_winkler`, `tagfold.native.l2`);
`tagfold.native.dispatch.resolve_impl` picks native or reference (`TAGFOLD_IMPL`).
"""
