"""The inference plan's runner: a whole network's forward pass in one call into C (src_ext/plan.h).

``Plan`` holds the operations that cycnn/nn/plan.py compiled from a Sequential, the activation arenas (one slot
per thread) and the threads' scratch arenas, all allocated once. The weights are read in place from the layers'
arrays; the few that a kernel wants in another layout (a convolution's transposed weights for the GEMM, Winograd's
transformed kernel) are derived once and kept with a snapshot of their source: each run compares the source with
its snapshot (a memcmp, a microsecond for the reference network) and derives again if an optimizer has changed the
weights in place since.

Every offset and size is checked here against the arenas and the arrays when the plan is built, so a plan that
does not fit together is a ValueError, never a write out of bounds.
"""
from cython cimport floating
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from kernels cimport (CYCNN_DIRECT_MAX_TAPS, CYCNN_VECTOR_BYTES, DENSE_VECS, PLAN_CONV_DIRECT,
                      PLAN_CONV_GEMM, PLAN_CONV_WINOGRAD, PLAN_DENSE, PLAN_POOL, PLAN_RELU, cycnn_plan_op,
                      cycnn_plan_run, cycnn_winograd_kernel)

KINDS = {"conv_gemm": PLAN_CONV_GEMM, "conv_direct": PLAN_CONV_DIRECT, "conv_winograd": PLAN_CONV_WINOGRAD,
         "pool": PLAN_POOL, "relu": PLAN_RELU, "dense": PLAN_DENSE}
# Arena offsets are rounded up to this many bytes (one vector).
ALIGN_BYTES = CYCNN_VECTOR_BYTES
cdef enum:
    TRANSPOSE = 1
    WINOGRAD = 2
    PAD_COLUMNS = 3
    PANELS = 4
DERIVE_TRANSPOSE, DERIVE_WINOGRAD, DERIVE_PAD_COLUMNS, DERIVE_PANELS = TRANSPOSE, WINOGRAD, PAD_COLUMNS, PANELS


cdef struct Derived:
    int kind          # TRANSPOSE: W (F, T) -> W^T (T, Fp); WINOGRAD: W (F, C, 3, 3) -> U (16, C, F);
                      # PAD_COLUMNS: W (T, F) -> (T, Fp), zero columns after F; PANELS: the same, laid out
                      # panel after panel (plan_impl.h), derived only when blocks of images run
    const char* source
    char* snapshot
    Py_ssize_t nbytes
    void* out
    Py_ssize_t F, T, Fp, C


cdef Py_ssize_t address(array) except -1:
    return array.__array_interface__["data"][0]


def holds(list entries):
    """Whether every layer of ``entries`` (layer, parameter name, array) still holds that very array: the plan
    compiled from them is still the model's. Checked on every call, so in C (the Python loop took a microsecond)."""
    cdef tuple entry
    cdef object params
    for entry in entries:
        params = entry[0].params
        if type(params) is not dict or (<dict>params).get(entry[1]) is not entry[2]:
            return False
    return True


def _require(ok, message):
    if not ok:
        raise ValueError(message)


cdef void derive(const Derived* d, floating* rows) noexcept nogil:
    """Recompute one derived weight array from its source (``rows``: 16 * F scratch for Winograd)."""
    cdef const floating* src = <const floating*>d.source
    cdef floating* dst = <floating*>d.out
    cdef Py_ssize_t f, t, n0, width, panel
    if d.kind == TRANSPOSE:
        for f in range(d.F):
            for t in range(d.T):
                dst[t * d.Fp + f] = src[f * d.T + t]
    elif d.kind == PAD_COLUMNS:
        for t in range(d.T):
            memcpy(&dst[t * d.Fp], &src[t * d.F], d.F * sizeof(floating))
    elif d.kind == PANELS:
        panel = DENSE_VECS * (CYCNN_VECTOR_BYTES // sizeof(floating))
        n0 = 0
        while n0 < d.Fp:
            width = min(panel, d.Fp - n0)
            for t in range(d.T):
                for f in range(width):
                    dst[d.T * n0 + t * width + f] = src[t * d.F + n0 + f] if n0 + f < d.F else 0
            n0 += panel
    else:
        cycnn_winograd_kernel(src, d.F, d.C, rows, dst)


cdef int refresh(Derived* derived, int count, floating* rows, bint blocks) noexcept nogil:
    """Derive again every array whose source no longer matches its snapshot (the dense layers' panels only when
    ``blocks`` of images will run: one image reads the row-major weights); returns how many were."""
    cdef int k, changed = 0
    for k in range(count):
        if derived[k].kind == PANELS and not blocks:
            continue
        if memcmp(derived[k].source, derived[k].snapshot, derived[k].nbytes) != 0:
            derive(&derived[k], rows)
            memcpy(derived[k].snapshot, derived[k].source, derived[k].nbytes)
            changed += 1
    return changed


cdef class Plan:
    """A compiled forward pass: ``run(x, probs, logits, split)`` on (N, image_size) inputs."""
    cdef cycnn_plan_op* ops
    cdef Derived* derived
    cdef int nops, nderived, threads
    cdef readonly Py_ssize_t block
    cdef readonly bint double
    cdef readonly Py_ssize_t image_size, slot_size, scratch_size, logits_at, classes
    cdef object slots, scratch, rows, keep
    cdef void* slots_at
    cdef void* scratch_at
    cdef void* rows_at

    def __cinit__(self):
        self.ops = NULL
        self.derived = NULL

    def __init__(self, ops, derived, dtype, Py_ssize_t image_size, Py_ssize_t slot_size,
                 Py_ssize_t scratch_size, Py_ssize_t logits_at, Py_ssize_t classes, int threads,
                 Py_ssize_t block=16):
        """``ops``: dicts of cycnn_plan_op's fields, "weight"/"bias" as arrays; ``derived``: (kind, source,
        snapshot, out) for each array a kernel reads in a layout of its own (out is what an op's "weight" is);
        ``block``: the most images a thread takes at once for a batch (each has a slot)."""
        import numpy as np
        self.double = np.dtype(dtype) == np.float64
        _require(np.dtype(dtype) in (np.float32, np.float64), "a plan computes in float32 or float64")
        _require(threads >= 1 and len(ops) >= 1, "a plan needs an operation and a thread")
        _require(1 <= block <= 1024, "a block holds 1 to 1024 images")
        _require(image_size >= 1 and classes >= 1 and 0 <= logits_at and logits_at + classes <= slot_size,
                 "the logits lie outside the slot")
        self.image_size, self.slot_size, self.scratch_size = image_size, slot_size, scratch_size
        self.logits_at, self.classes, self.threads, self.block = logits_at, classes, threads, block
        # Image mode gives each thread a block of slots (split mode uses the first).
        self.slots = np.zeros(threads * block * slot_size, dtype=dtype)
        self.scratch = np.zeros(threads * max(scratch_size, 1), dtype=dtype)
        self.keep = []
        self.nops = len(ops)
        self.ops = <cycnn_plan_op*>calloc(self.nops, sizeof(cycnn_plan_op))
        self.derived = <Derived*>calloc(max(len(derived), 1), sizeof(Derived))
        if self.ops == NULL or self.derived == NULL:
            raise MemoryError()
        rows_needed = 1
        for k, entry in enumerate(derived):
            self._set_derived(k, *entry, np.dtype(dtype))
            rows_needed = max(rows_needed, 16 * self.derived[k].F)
        self.nderived = len(derived)
        self.rows = np.zeros(rows_needed, dtype=dtype)
        self.slots_at = <void*><Py_ssize_t>address(self.slots)
        self.scratch_at = <void*><Py_ssize_t>address(self.scratch)
        self.rows_at = <void*><Py_ssize_t>address(self.rows)
        for k, op in enumerate(ops):
            self._set_op(k, op, np.dtype(dtype))
        for k in range(self.nderived):
            memcpy(self.derived[k].snapshot, self.derived[k].source, self.derived[k].nbytes)
            if self.double:
                derive[double](&self.derived[k], <double*>self.rows_at)
            else:
                derive[float](&self.derived[k], <float*>self.rows_at)

    def __dealloc__(self):
        free(self.ops)
        free(self.derived)

    def _array(self, array, dtype, size, what):
        _require(array.dtype == dtype and array.flags.c_contiguous and array.size == size,
                 f"{what} must be a C-contiguous {dtype} array of {size} numbers, received {array.dtype} "
                 f"{array.shape}")
        self.keep.append(array)
        return address(array)

    def _set_derived(self, int k, kind, source, snapshot, out, dtype):
        cdef Derived* d = &self.derived[k]
        d.kind = kind
        if kind in (DERIVE_PAD_COLUMNS, DERIVE_PANELS):
            lanes = CYCNN_VECTOR_BYTES // dtype.itemsize
            _require(source.ndim == 2 and out.ndim == 2 and out.shape[0] == source.shape[0]
                     and out.shape[1] >= source.shape[1] and out.shape[1] % lanes == 0,
                     "padded columns and panels are (T, F) -> (T, Fp >= F), Fp whole vectors")
            d.T, d.F, d.Fp, d.C = source.shape[0], source.shape[1], out.shape[1], 0
        elif kind == DERIVE_TRANSPOSE:
            _require(source.ndim == 4 and out.ndim == 2, "a transposed weight is (F, C, kh, kw) -> (T, Fp)")
            d.F, d.T, d.Fp, d.C = source.shape[0], source[0].size, out.shape[1], source.shape[1]
            _require(out.shape[0] == d.T and d.Fp >= d.F, "a transposed weight is (T, Fp) with Fp >= F")
        else:
            _require(kind == DERIVE_WINOGRAD and source.ndim == 4 and source.shape[2:] == (3, 3),
                     "Winograd's kernel comes from 3x3 weights")
            d.F, d.C, d.T, d.Fp = source.shape[0], source.shape[1], 9 * source.shape[1], source.shape[0]
            _require(out.shape == (16, d.C, d.F), "Winograd's kernel is (16, C, F)")
        d.source = <const char*><Py_ssize_t>self._array(source, dtype, source.size, "a derived weight's source")
        d.snapshot = <char*><Py_ssize_t>self._array(snapshot, dtype, source.size, "a derived weight's snapshot")
        d.out = <void*><Py_ssize_t>self._array(out, dtype, out.size, "a derived weight")
        d.nbytes = source.nbytes

    def _set_op(self, int k, op, dtype):
        cdef cycnn_plan_op* o = &self.ops[k]
        o.kind = KINDS[op["kind"]]
        o.relu, o.pool = bool(op.get("relu", False)), bool(op.get("pool", False))
        o.hwc_out, o.hwc_in = bool(op.get("hwc_out", False)), bool(op.get("hwc_in", False))
        for name in ("C", "H", "W", "F", "KH", "KW", "stride", "pad", "OH", "OW", "ph", "pw", "sh", "sw", "PH",
                     "PW", "Fp", "out", "cols", "rows", "padded", "tiles", "products"):
            setattr_op(o, name, int(op.get(name, 0)))
        o.in_ = int(op["in"])
        in_size, out_size, scratch_end, weight_size = _sizes(op)
        _require(all(int(op.get(n, 0)) >= 0 for n in ("C", "H", "W", "F", "KH", "KW", "pad", "OH", "OW", "ph",
                                                        "pw", "PH", "PW", "Fp", "out")),
                 f"operation {k}: negative sizes")
        _require(in_size >= 1 and out_size >= 1, f"operation {k}: an empty input or output")
        _require((o.in_ < 0 and in_size == self.image_size) or (o.in_ >= 0 and o.in_ + in_size <= self.slot_size),
                 f"operation {k}: its input lies outside the slot (or is not the image)")
        _require(o.out + out_size <= self.slot_size, f"operation {k}: its output lies outside the slot")
        _require(scratch_end <= self.scratch_size, f"operation {k}: its scratch lies outside the arena")
        o.weight = <const void*><Py_ssize_t>self._array(op["weight"], dtype, weight_size, f"operation {k}'s weight")
        o.panels = NULL
        if o.kind == PLAN_DENSE:
            o.panels = <const void*><Py_ssize_t>self._array(op["panels"], dtype, weight_size, f"operation {k}'s panels")
        o.bias = <const void*><Py_ssize_t>self._array(op["bias"], dtype, o.F, f"operation {k}'s bias") \
            if op.get("bias") is not None else NULL
        _require(o.kind in (PLAN_POOL, PLAN_RELU) or o.bias != NULL, f"operation {k} needs a bias")

    def run(self, x, probs, logits=None, bint split=True, Py_ssize_t block=0):
        """Probabilities (N, classes) float64 into ``probs`` (or None) and logits into ``logits`` (or None) for the
        images ``x`` (N, image_size); ``split``: the threads share each image (else they take blocks of ``block``
        images, 0 or too many: the plan's block). Returns False, computing nothing, when an input is NaN or
        infinite."""
        if self.double:
            return run_plan[double](self, x, probs, logits, split, block)
        return run_plan[float](self, x, probs, logits, split, block)


cdef void setattr_op(cycnn_plan_op* o, str name, Py_ssize_t v):
    if name == "C": o.C = v
    elif name == "H": o.H = v
    elif name == "W": o.W = v
    elif name == "F": o.F = v
    elif name == "KH": o.KH = v
    elif name == "KW": o.KW = v
    elif name == "stride": o.stride = v
    elif name == "pad": o.pad = v
    elif name == "OH": o.OH = v
    elif name == "OW": o.OW = v
    elif name == "ph": o.ph = v
    elif name == "pw": o.pw = v
    elif name == "sh": o.sh = v
    elif name == "sw": o.sw = v
    elif name == "PH": o.PH = v
    elif name == "PW": o.PW = v
    elif name == "Fp": o.Fp = v
    elif name == "out": o.out = v
    elif name == "cols": o.cols = v
    elif name == "rows": o.rows = v
    elif name == "padded": o.padded = v
    elif name == "tiles": o.tiles = v
    elif name == "products": o.products = v


def _sizes(op):
    """(input size, output size, end of its scratch, weight size) of an operation, each checked against its shape:
    the sizes the C code will touch."""
    kind, g = op["kind"], lambda n: int(op.get(n, 0))
    C, H, W, F = g("C"), g("H"), g("W"), g("F")
    in_size = C * H * W
    lanes = CYCNN_VECTOR_BYTES // (8 if op["weight"].dtype.itemsize == 8 else 4)  # whole vectors of the weights
    _require(not op.get("hwc_out") or (kind in ("conv_gemm", "conv_direct", "conv_winograd") and op.get("pool")
                                       and F % lanes == 0),
             "a channels-last output comes from a pooled convolution, in whole vectors of channels")
    _require(not op.get("hwc_in") or (kind == "conv_winograd" and C % lanes == 0),
             "a channels-last input goes into Winograd, in whole vectors of channels")
    if kind in ("conv_gemm", "conv_direct", "conv_winograd"):
        KH, KW, s, p, OH, OW = g("KH"), g("KW"), g("stride"), g("pad"), g("OH"), g("OW")
        _require(KH >= 1 and KW >= 1 and s >= 1 and H + 2 * p >= KH and W + 2 * p >= KW
                 and OH == (H + 2 * p - KH) // s + 1 and OW == (W + 2 * p - KW) // s + 1 and F >= 1,
                 "a convolution's output map does not follow from its input, kernel, stride and padding")
        out_size = F * OH * OW
        if op.get("pool"):
            _check_windows(op, OH, OW)
            out_size = F * g("PH") * g("PW")
    if kind in ("conv_gemm", "conv_direct"):
        T, Fp, P = C * KH * KW, g("Fp"), OH * OW
        _require(Fp >= F and Fp % lanes == 0, "the rows' width is F rounded up to whole vectors")
        if kind == "conv_gemm":
            _require(g("cols") >= 0 and g("rows") >= g("cols") + T * P, "the GEMM's columns overlap its rows")
        else:
            _require(T <= CYCNN_DIRECT_MAX_TAPS, "more taps than the direct kernel takes")
            band = C * (H + 2 * p) * (W + 2 * p)  # a thread's band of rows is at most the whole padded image
            _require(g("padded") >= 0 and g("rows") >= g("padded") + band, "the direct band overlaps its rows")
        return in_size, out_size, g("rows") + P * Fp, T * Fp
    if kind == "conv_winograd":
        PH, PW = g("PH"), g("PW")
        _require(KH == 3 and KW == 3 and s == 1 and op.get("pool") and op.get("relu") and F % lanes == 0
                 and (g("ph"), g("pw"), g("sh"), g("sw")) == (2, 2, 2, 2),
                 "Winograd takes a 3x3 stride-1 convolution with a ReLU and 2x2 pooling, in whole vectors")
        HP, WP = H + 2 * p, W + 2 * p
        parts = [(g("padded"), C * HP * WP if p > 0 else 0), (g("tiles"), 16 * PW * C), (g("products"), 16 * PW * F)]
        _require(all(a >= 0 for a, _ in parts), "negative scratch offsets")
        ordered = sorted(parts)
        _require(all(a + n <= b for (a, n), (b, _) in zip(ordered, ordered[1:])), "Winograd's scratch overlaps")
        return in_size, out_size, max(a + n for a, n in parts), 16 * C * F
    if kind == "pool":
        _check_windows(op, H, W)
        return in_size, C * g("PH") * g("PW"), 0, 0
    if kind == "relu":
        return in_size, in_size, 0, 0
    Fp = g("Fp")
    _require(kind == "dense" and H == 1 and W == 1 and F >= 1 and Fp >= F and Fp % lanes == 0,
             "a dense operation is (C, 1, 1) -> F, its weights Fp >= F whole vectors of columns")
    return in_size, Fp, 0, C * Fp  # the output holds the Fp columns the kernel writes


def _check_windows(op, H, W):
    g = lambda n: int(op.get(n, 0))
    ph, pw, sh, sw, PH, PW = g("ph"), g("pw"), g("sh"), g("sw"), g("PH"), g("PW")
    _require(ph >= 1 and pw >= 1 and sh >= 1 and sw >= 1 and PH >= 1 and PW >= 1
             and (PH - 1) * sh + ph <= H and (PW - 1) * sw + pw <= W, "pooling windows outside the map")


cdef object run_plan(Plan plan, floating[:, ::1] x, double[:, ::1] probs, floating[:, ::1] logits, bint split,
                     Py_ssize_t block):
    cdef Py_ssize_t N = x.shape[0]
    cdef double* p = NULL
    cdef floating* l = NULL
    cdef floating* rows = <floating*>plan.rows_at
    cdef floating* slots = <floating*>plan.slots_at
    cdef floating* scratch = <floating*>plan.scratch_at
    cdef int rc
    if x.shape[1] != plan.image_size:
        raise ValueError(f"the plan takes images of {plan.image_size} numbers, received {x.shape[1]}")
    if probs is not None:
        _require(probs.shape[0] == N and probs.shape[1] == plan.classes, "probs must be (N, classes)")
        p = &probs[0, 0] if N > 0 else NULL
    if logits is not None:
        _require(logits.shape[0] == N and logits.shape[1] == plan.classes, "logits must be (N, classes)")
        l = &logits[0, 0] if N > 0 else NULL
    if N == 0:
        return True
    with nogil:
        refresh(plan.derived, plan.nderived, rows, not split and N > 1)
        rc = cycnn_plan_run(plan.ops, plan.nops, &x[0, 0], N, plan.image_size, slots, plan.slot_size, scratch,
                            plan.scratch_size, plan.logits_at, plan.classes, p, l, plan.threads, split, block,
                            plan.block)
    return rc == 0
