"""Build script for the Cython Hamming-search extension.

The wheel is portable: no host-tuned -march flag.  The popcount paths
(AVX-512 VPOPCNTDQ, AVX2, POPCNT, portable) are compiled per function with
target attributes and selected at run time (see ``src_ext/popcount.h``).
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

if sys.platform == "darwin" or sys.platform.startswith("win"):
    openmp_compile, openmp_link = [], []
else:
    openmp_compile, openmp_link = ["-fopenmp"], ["-fopenmp"]

# Every src_ext/<name>.pyx is the extension module flexcmh_fast.<name>.
extensions = [
    Extension(
        f"flexcmh_fast.{os.path.splitext(os.path.basename(pyx))[0]}",
        sources=[pyx],
        # The kernels are headers: rebuild when any of them changes.
        depends=sorted(glob.glob(os.path.join("src_ext", "*.h"))
                       + glob.glob(os.path.join("src_ext", "*.inc"))),
        include_dirs=[np.get_include(), "src_ext"],
        extra_compile_args=["-O3"] + openmp_compile,
        extra_link_args=openmp_link,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted(glob.glob(os.path.join("src_ext", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
