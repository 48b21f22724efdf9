"""Build the Cython kernels in src_ext/ into the cycnn package.

Release builds turn bounds checking off; set CYCNN_BOUNDSCHECK=1 to build a
checked copy (CI runs the kernel tests against it too); switching between the
two rebuilds everything. OpenMP is used when the
compiler accepts -fopenmp and skipped cleanly otherwise.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# Each kernel module is built into the subpackage that calls it: the layers' kernels into cycnn.nn, the image
# warp into cycnn.data.
KERNELS = {"conv": "nn", "pool": "nn", "fused": "nn", "dense": "nn", "activation": "nn", "optim": "nn",
           "parallel": "nn", "plan": "nn", "augment": "data"}


def compiler_accepts(flags, source="int main(void){return 0;}\n"):
    """Compile a tiny program with `flags`; lets the build fall back cleanly on other compilers."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(source)
        result = subprocess.run([cc, *flags, src, "-o", os.path.join(tmp, "probe")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return result.returncode == 0


OPENMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"

checked = os.environ.get("CYCNN_BOUNDSCHECK", "0") == "1"
openmp = os.environ.get("CYCNN_OPENMP", "1") == "1" and compiler_accepts(["-fopenmp"], OPENMP_PROBE)
if sys.platform == "win32":
    compile_args, link_args = ["/O2"], []
else:
    # -fno-math-errno: sqrt needs no error branch (cycnn never reads errno), so loops with sqrt vectorize.
    compile_args, link_args = ["-O3", "-fno-math-errno"], []
    # The package is compiled on the machine that runs it, so tune for that CPU (AVX-512 here).
    if os.environ.get("CYCNN_NATIVE", "1") == "1" and compiler_accepts(["-march=native"]):
        compile_args.append("-march=native")
if openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

extensions = [
    Extension(
        f"cycnn.{package}._{name}",
        [f"src_ext/{name}.pyx"],
        include_dirs=[np.get_include(), "src_ext"],
        depends=sorted(glob.glob("src_ext/*.h")),  # the C kernels: a change to one rebuilds the modules
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name, package in KERNELS.items()
]

directives = {
    "language_level": 3,
    "boundscheck": checked,
    "wraparound": checked,
    "initializedcheck": checked,
    "cdivision": True,
    "embedsignature": True,
}


def mode_switched(mode, record=os.path.join("build", "cycnn-kernel-mode")):
    """True when the last build in this tree was of the other kind (release or checked), and remember this one.

    cythonize and build_ext compare timestamps only, not compiler directives: without a forced rebuild, switching
    CYCNN_BOUNDSCHECK would silently keep the previous build's C files and kernels.
    """
    try:
        with open(record) as fh:
            switched = fh.read() != mode
    except OSError:
        switched = True
    os.makedirs(os.path.dirname(record), exist_ok=True)
    with open(record, "w") as fh:
        fh.write(mode)
    return switched


rebuild = mode_switched("checked" if checked else "release")
setup(ext_modules=cythonize(extensions, compiler_directives=directives, force=rebuild),
      options={"build_ext": {"force": True}} if rebuild else {})
