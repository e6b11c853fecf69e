"""Build tagfold: the Cython kernels in native/ and the packages under the tagfold namespace.

The source folders keep the project's top-level layout (native/, pipeline/, training/), and
package_dir maps them to import names under one namespace (tagfold.native, ...).
A failed compile is an error, never a silent fall-back to the pure-Python reference.
"""
import platform
import sys

import numpy
from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:
    sys.exit("setup.py: Cython is required to build tagfold's kernels (pip install -r requirements.txt)")

OPENMP = ["-fopenmp"]
# The Jaro-Winkler kernel counts bits per pair; without -mpopcnt GCC calls a slow libgcc routine.
# Every x86-64 CPU since 2008 has POPCNT; -march=native is avoided so built images stay portable.
POPCNT = ["-mpopcnt"] if platform.machine().lower() in ("x86_64", "amd64") else []
extensions = [
    Extension(
        "tagfold.native._jaro",
        ["native/_jaro.pyx"],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3", *POPCNT, *OPENMP],
        extra_link_args=OPENMP,
    ),
    # Stage II's segmentation and matching loops (no OpenMP: they run in forked workers)
    Extension("tagfold.native._stage2", ["native/_stage2.pyx"], extra_compile_args=["-O3"]),
    # Stage II's tokenizer for ASCII tags (runs once over every tag, in the main process)
    Extension("tagfold.native._tokenize", ["native/_tokenize.pyx"], extra_compile_args=["-O3"]),
]

setup(
    name="tagfold",
    version="0.1.0",
    description="Clean and collapse music folksonomy tags; train and evaluate auto-taggers on them.",
    python_requires=">=3.11",
    packages=["tagfold", "tagfold.native", "tagfold.pipeline", "tagfold.pipeline.tags", "tagfold.pipeline.audio", "tagfold.training"],
    package_dir={
        "tagfold": "tagfold",
        "tagfold.native": "native",
        "tagfold.pipeline": "pipeline",
        "tagfold.pipeline.tags": "pipeline/tags",
        "tagfold.pipeline.audio": "pipeline/audio",
        "tagfold.training": "training",
    },
    package_data={"tagfold.pipeline": ["data/*.csv", "data/*.txt", "data/*/*.txt", "data/*/*.tsv", "data/*/*.csv"]},
    ext_modules=cythonize(extensions, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    entry_points={"console_scripts": ["tagfold = tagfold.cli:main"]},
    zip_safe=False,
)
