"""Fused CPU loops (``kernels.c``), compiled on first use with this machine's C compiler.

Why: after the chunking of :mod:`tlsearch.model.kernels.edge_gated`, a training step on CPU
spends about two thirds of its time outside the matmuls, in ~30 elementwise, index and
reduction passes per edge-gated layer over (rows, 256) chunks; each pass reads and writes the
whole chunk. The loops here do the same arithmetic in one pass per stage (gates, batch moments,
batch norm + SiLU, their gradients, the gated scatter-adds), on the calling thread: the chunk
workers already give each thread whole chunks.

How: ``kernels.c`` is plain C with no torch headers, so it compiles in about a second; it is
built with ``-O3 -march=native`` (the loops vectorize at this CPU's width, AVX-512 or AVX2 or
NEON) into a cache keyed by the source, the flags, the compiler and the CPU's feature flags
(``$TLSEARCH_NATIVE_CACHE``, default ``~/.cache/tlsearch/native``), and called through ctypes,
which releases the GIL. Without a working compiler, or with ``TLSEARCH_NATIVE=0``, every caller
keeps the torch path (same results within float32 rounding) and one warning says why.

The callers check :func:`usable` (float32 CPU tensors, contiguous rows, one torch thread) and
otherwise run the torch ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
#: The loops' exp is branch-free only once the clamps and roundings may become min/max/round
#: instructions: no NaN/Inf assumed (a NaN still reaches the loss through m), no errno.
MATH_FLAGS = ["-fno-trapping-math", "-fno-math-errno", "-ffinite-math-only", "-fno-signed-zeros"]


def flag_sets() -> list[list[str]]:
    """Compiler flags tried in turn until one builds: this CPU's instructions (on x86 with
    512-bit vectors where it has them: faster than gcc's default 256 bits on an AVX-512 Xeon,
    bench/README.md), then portable code when the compiler knows no ``-march``.
    ``$TLSEARCH_NATIVE_ARCH`` replaces ``native`` (e.g. ``haswell``: AVX2, as on an AVX2-only
    CPU; ``tlsearch bench kernels`` uses it)."""
    arch = f"-march={os.environ.get('TLSEARCH_NATIVE_ARCH') or 'native'}"
    tail = [*MATH_FLAGS, "-fPIC", "-shared"]
    sets = [["-O3", arch, *tail], ["-O3", *tail]]
    if platform.machine().lower() in {"x86_64", "amd64"}:
        sets.insert(0, ["-O3", arch, "-mprefer-vector-width=512", *tail])
    return sets


_I64, _P = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES: dict[str, list] = {
    "tl_gates_forward": [_I64, _I64, _P, _P, _P, _P, _P, _I64, _P, _P, _P, _P, _P, _P],
    "tl_col_moments": [_I64, _I64, _P, _P, _P, _P],
    "tl_bn_silu": [_I64, _I64, _P, _P, _P, _P, _P],
    "tl_bn_silu_grad_sums": [_I64, _I64, _P, _P, _P, _P, _P, _P, _P, _P],
    "tl_bn_input_grad": [_I64, _I64, _P, _P, _P, _P, _P, _P],
    "tl_gates_backward": [_I64, _I64, _P, _P, _P, _P, _I64, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                          _P, _P, _P, _I64],
}  # fmt: skip

_lib: ctypes.CDLL | None = None
#: The flags of the loaded library ("" until one is loaded).
built_with = ""
_tried = False
_lock = threading.Lock()


def enabled() -> bool:
    """Whether the native loops may be used (``TLSEARCH_NATIVE=0`` turns them off)."""
    return os.environ.get("TLSEARCH_NATIVE", "1").strip().lower() not in {"0", "false", "no"}


def cache_dir() -> Path:
    """Where compiled libraries are kept."""
    env = os.environ.get("TLSEARCH_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tlsearch" / "native"


def _compiler() -> str:
    return os.environ.get("CC", "cc")


def _cpu_identity() -> str:
    """This CPU's feature flags (what ``-march=native`` compiles for), or its platform names."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _compiler_version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return done.stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def library_key(source: bytes, flags: list[str], cc: str) -> str:
    """Cache key of one build: source, flags, compiler and CPU."""
    digest = hashlib.sha256(source)
    for part in (" ".join(flags), cc, _compiler_version(cc), _cpu_identity()):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:20]


def _build(source: bytes, flags: list[str], cc: str, target: Path) -> None:
    """Compile ``source`` into ``target`` (atomically: concurrent builders race harmlessly)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernels.c"
        src.write_bytes(source)
        out = Path(tmp) / target.name
        done = subprocess.run(
            [cc, *flags, "-o", str(out), str(src)], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cc} {' '.join(flags)} failed: {done.stderr.strip()[-2000:]}")
        os.replace(out, target)


def _load() -> ctypes.CDLL:
    source, cc = SOURCE.read_bytes(), _compiler()
    errors = []
    for flags in flag_sets():
        target = cache_dir() / f"kernels-{library_key(source, flags, cc)}.so"
        try:
            if not target.exists():
                _build(source, flags, cc, target)
                logger.info("compiled the native CPU loops: %s", target)
            lib = ctypes.CDLL(str(target))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            errors.append(str(err))
            continue
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = argtypes, None
        global built_with
        built_with = " ".join(flags)
        return lib
    raise RuntimeError("; ".join(errors))


def library() -> ctypes.CDLL | None:
    """The compiled loops, or None (disabled, or no compiler: warned once)."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if enabled():
                try:
                    _lib = _load()
                except Exception as err:  # any failure keeps the torch path
                    logger.warning(
                        "native CPU loops unavailable (%s): using the torch ops, slower on CPU; "
                        "set CC to a C compiler, or TLSEARCH_NATIVE=0 to silence this",
                        err,
                    )
            _tried = True
    return _lib


def reset() -> None:
    """Forget the loaded library (tests: rebuild or disable after changing the environment)."""
    global _lib, _tried
    with _lock:
        _lib, _tried = None, False


def usable(*tensors: Tensor | None, rows: Sequence[Tensor] = ()) -> bool:
    """Whether the loops may run here on ``tensors`` (contiguous) and ``rows`` (row views of a
    wider table: unit stride within a row): the library loads, torch runs on one thread (the
    loops are serial; callers use them inside chunk workers or one-thread sections) and every
    tensor is float32 on the CPU. int64 index tensors are checked by the callers. The tensors
    are checked first: nothing is built or loaded for tensors on another device."""
    if torch.get_num_threads() != 1:
        return False

    def fits(t: Tensor | None, contiguous: bool) -> bool:
        if t is None:
            return True
        laid_out = t.is_contiguous() if contiguous else t.stride(-1) == 1
        return t.device.type == "cpu" and t.dtype == torch.float32 and laid_out

    if not (all(fits(t, True) for t in tensors) and all(fits(t, False) for t in rows)):
        return False
    return library() is not None


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def gates_forward(
    src: Tensor, dst: Tensor, a: Tensor, b: Tensor, c: Tensor, m: Tensor, den: Tensor,
    num: Tensor, shift: Tensor | None = None, col: Tensor | None = None,
    sq: Tensor | None = None,
) -> None:  # fmt: skip
    """In place: ``m += A_u + B_v``; with ``s = sigmoid(m)``, ``den[v] += s`` and
    ``num[v] += C_u s``; with ``col`` (and ``shift``, ``sq``) and ``d = m - shift``,
    ``col +=`` the column sums of ``d`` and ``sq +=`` of ``d ** 2`` (float64). ``a``, ``b``,
    ``c``: (N, D) row views with one row stride."""
    if col is not None and (shift is None or sq is None):
        raise ValueError("the moments need shift, col and sq")
    n, d = m.shape
    _check_index(src, dst, n)
    library().tl_gates_forward(
        n, d, _p(src), _p(dst), _p(a), _p(b), _p(c), a.stride(0), _p(m), _p(den), _p(num),
        _p(shift), _p(col), _p(sq),
    )  # fmt: skip


def col_moments(m: Tensor, shift: Tensor, col: Tensor, sq: Tensor) -> None:
    """With ``d = m - shift``: ``col += d.sum(0)``, ``sq += (d ** 2).sum(0)`` in float64."""
    library().tl_col_moments(m.shape[0], m.shape[1], _p(m), _p(shift), _p(col), _p(sq))


def bn_silu(m: Tensor, scale: Tensor, shift: Tensor, res: Tensor | None, out: Tensor) -> None:
    """``out = silu(m * scale + shift) (+ res)``."""
    library().tl_bn_silu(m.shape[0], m.shape[1], _p(m), _p(scale), _p(shift), _p(res), _p(out))


def bn_silu_grad_sums(
    m: Tensor, g_out: Tensor, scale: Tensor, shift: Tensor, mean: Tensor, g_z: Tensor,
    g_gamma: Tensor, g_beta: Tensor,
) -> None:  # fmt: skip
    """``g_z = g_out * silu'(m * scale + shift)``; ``g_beta += sum g_z``,
    ``g_gamma += sum (m - mean) g_z`` (float64 sums)."""
    library().tl_bn_silu_grad_sums(
        m.shape[0], m.shape[1], _p(m), _p(g_out), _p(scale), _p(shift), _p(mean), _p(g_z),
        _p(g_gamma), _p(g_beta),
    )  # fmt: skip


def bn_input_grad(
    g: Tensor, m: Tensor, scale: Tensor, a: Tensor | None, b: Tensor | None,
    col: Tensor | None = None,
) -> None:  # fmt: skip
    """In place ``g = g * scale (+ m * a + b)``; ``col += `` the new ``g``'s column sums
    (float64) when given."""
    library().tl_bn_input_grad(
        g.shape[0], g.shape[1], _p(g), _p(m), _p(scale), _p(a), _p(b), _p(col)
    )


def gates_backward(
    src: Tensor, dst: Tensor, g_num: Tensor, c: Tensor, h: Tensor, m: Tensor,
    s: Tensor | None, g_z: Tensor | None, scale: Tensor, a: Tensor | None, b: Tensor | None,
    g_m: Tensor, g_a: Tensor, g_b: Tensor, g_c: Tensor, res: Tensor | None = None,
) -> None:  # fmt: skip
    """``g_m`` of one chunk's gates and its scatter-adds into ``g_a``, ``g_b``, ``g_c`` (see
    ``tl_gates_backward`` in kernels.c): (N, D) row views with one row stride, e.g. column
    blocks of one table. With ``res`` (needs ``g_z``), ``g_z`` holds ``res`` on return."""
    if res is not None and (g_z is None or res.shape != g_z.shape):
        raise ValueError("res needs g_z of its shape")
    n, d = m.shape
    _check_index(src, dst, n)
    ldg = g_a.stride(0)
    if any(t.stride() != (ldg, 1) for t in (g_a, g_b, g_c)):
        raise ValueError("g_a, g_b and g_c must be row views with one row stride")
    library().tl_gates_backward(
        n, d, _p(src), _p(dst), _p(g_num), _p(c), c.stride(0), _p(h), _p(m), _p(s), _p(g_z),
        _p(res), _p(scale), _p(a), _p(b), _p(g_m), _p(g_a), _p(g_b), _p(g_c), ldg,
    )  # fmt: skip


def _check_index(src: Tensor, dst: Tensor, rows: int) -> None:
    for t in (src, dst):
        if t.dtype != torch.int64 or not t.is_contiguous() or t.shape[0] != rows:
            raise ValueError(f"expected {rows} contiguous int64 indices, got {t.dtype} {t.shape}")
