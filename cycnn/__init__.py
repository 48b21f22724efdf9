"""cycnn: a convolutional neural network from scratch, with typed Cython kernels, that learns to read digits."""
import os

# The kernels' OpenMP threads and OpenBLAS's threads take turns on the same cores. Spinning OpenMP workers would
# steal the cores from the BLAS call that follows each kernel (2.5x slower training on 2 cores), so idle OpenMP
# threads sleep. This must be set before the OpenMP runtime loads with the first kernel module.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from cycnn.model import Sequential  # noqa: E402

__all__ = ["Sequential", "__version__"]
