"""cycnn: a convolutional neural network from scratch, with typed Cython kernels, that learns to read digits."""
import os

# How idle OpenMP threads wait for the next kernel (read when the OpenMP runtime loads with the first kernel module,
# so it is set here): they spin 30,000 times (about half a millisecond) and then sleep. Waking a sleeping thread
# took about 0.1 ms on the 2-core machine cycnn is measured on, as long as many of its kernels, so threads that
# always sleep (OMP_WAIT_POLICY=PASSIVE) lost a tenth of the 2-thread training speed; libgomp's default (300,000
# spins) or ACTIVE would steal the core for milliseconds from the BLAS threads that im2col layers use (up to 2.5x
# slower). With more threads than cores, libgomp cuts the spinning itself. A user's own setting wins.
# GOMP_SPINCOUNT is GCC's libgomp (what setup.py builds with on Linux); KMP_BLOCKTIME (milliseconds) is the same
# knob for LLVM's libomp, whose default spins for 200 ms.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")
    os.environ.setdefault("KMP_BLOCKTIME", "1")

import importlib  # noqa: E402

from cycnn.version import __version__  # noqa: E402

# The names most scripts need, loaded when first used (PEP 562), so that ``import cycnn`` costs nothing and a
# script that uses only cycnn.nn loads only the core.
_EXPORTS = {"Sequential": "cycnn.nn.sequential", "load_model": "cycnn.io.model_file",
            "save_model": "cycnn.io.model_file", "fit": "cycnn.train.fit", "evaluate": "cycnn.train.fit",
            "predict": "cycnn.train.fit", "History": "cycnn.train.fit"}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cycnn' has no attribute {name!r}")
