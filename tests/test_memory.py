"""docs/contract.md §8: no temporary as large as the input for an int axis, whatever the strides.

Each case runs in a fresh interpreter and reads the peak RSS (ru_maxrss) before and after
one call on a 32 MiB float32 input.  The input (and out=, when given) is allocated and
filled in place first, with no temporaries, so the high-water mark at the baseline is the
current RSS and any growth is the call's own extra memory.
"""

import json

import pytest

from _ref import run_python

MiB = 1 << 20

_SCRIPT = r"""
import json, resource, sys
import numpy as np
import fastsoftmax as fs

layout, func, use_out = sys.argv[1], sys.argv[2], sys.argv[3] == "1"

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

rng = np.random.default_rng(0)

def filled(shape):
    a = np.empty(shape, np.float32)
    rng.standard_normal(dtype=np.float32, out=a)
    return a

M, N = 2048, 4096  # 32 MiB of float32
if layout == "C_last":
    x, axis = filled((M, N)), -1
elif layout == "C_axis0":
    x, axis = filled((M, N)), 0
elif layout == "stepped_last":
    x, axis = filled((M, 2 * N))[:, ::2], -1
elif layout == "stepped_axis0":
    x, axis = filled((2 * M, N))[::2], 0
elif layout == "stepped_both":
    x, axis = filled((2 * M, 2 * N))[::2, ::2], -1
elif layout == "transposed_last":
    x, axis = filled((N, M)).T, -1
elif layout == "middle_axis":
    x, axis = filled((64, 2048, 64)), 1
elif layout == "middle_axis_strided":
    x, axis = filled((64, 2048, 128))[:, :, ::2], 1
elif layout == "negative":
    x, axis = filled((M, N))[::-1, ::-1], -1
else:
    raise SystemExit("unknown layout " + layout)
assert x.nbytes == 32 * 2**20, x.nbytes
f = getattr(fs, func)
out = None
if use_out:
    oshape = x.shape if func != "logsumexp" else tuple(s for i, s in enumerate(x.shape)
                                                      if i != axis % x.ndim)
    out = np.empty(oshape, np.float32)
    out.fill(0.0)
# warm up: the thread team, per-thread buffers for a small problem of the same layout
f(x[:8] if axis != 0 else x[:, :8], axis=axis)
base = peak()
y = f(x, axis=axis, out=out) if use_out else f(x, axis=axis)
extra = peak() - base
ok = bool(np.isfinite(np.asarray(y)).all())
print(json.dumps({"extra": extra, "finite": ok}))
"""

LAYOUTS = ["C_last", "C_axis0", "stepped_last", "stepped_axis0", "stepped_both",
           "transposed_last", "middle_axis", "middle_axis_strided", "negative"]


def _measure(layout, func, use_out):
    p = run_python(_SCRIPT.replace("sys.argv[1], sys.argv[2], sys.argv[3]",
                                   f"{layout!r}, {func!r}, {'1' if use_out else '0'!r}"))
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["finite"]
    return r["extra"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax_extra_memory_with_out(layout):
    extra = _measure(layout, "softmax", True)
    # docs/contract.md §8: under half the input's size (16 MiB), plus the output (out=)
    assert extra < 16 * MiB, f"{layout}: {extra / MiB:.1f} MiB extra"


@pytest.mark.parametrize("layout", ["C_axis0", "stepped_last"])
@pytest.mark.parametrize("func", ["log_softmax", "logsumexp"])
def test_other_functions_extra_memory(func, layout):
    extra = _measure(layout, func, True)
    assert extra < 16 * MiB, f"{func} {layout}: {extra / MiB:.1f} MiB extra"


@pytest.mark.parametrize("layout", ["C_last", "stepped_last", "stepped_axis0"])
def test_softmax_extra_memory_without_out(layout):
    extra = _measure(layout, "softmax", False)
    # the 32 MiB output plus less than half the input
    assert extra < 32 * MiB + 16 * MiB, f"{layout}: {extra / MiB:.1f} MiB extra"


_LEAK_SCRIPT = r"""
import json, os
import numpy as np
import fastsoftmax as fs

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)
x = rng.standard_normal((256, 1024)).astype(np.float32)  # 1 MiB
xs = rng.standard_normal((256, 2048))[:, ::2]
w = rng.random((256, 1024)) < 0.5
b = rng.random(1024)
out = np.empty_like(x)

def round_():
    fs.softmax(x)
    fs.log_softmax(x, axis=0)
    fs.logsumexp(x)
    fs.softmax(xs, where=w, temperature=0.7)
    fs.logsumexp(xs, b=b, return_sign=True)
    fs.softmax(x, out=out)
    fs.softmax(x.astype(">f4"))
    fs.log_softmax(x, axis=(0, 1))
    fs.softmax([[1.0, 2.0], [3.0, 4.0]], dtype=np.float16)
    for bad in (dict(axis=5), dict(temperature=0.0), dict(where=np.ones(3, bool)),
                dict(out=np.empty((2, 2), np.float32)), dict(dtype=np.int32)):
        try:
            fs.softmax(x, **bad)
        except (ValueError, TypeError):
            pass
    try:
        fs.softmax(np.ones(3, complex))
    except TypeError:
        pass

for _ in range(30):  # warm up: allocator pools, thread team
    round_()
base = rss()
for _ in range(150):
    round_()
print(json.dumps({"growth": rss() - base}))
"""


def test_no_leak_over_repeated_calls():
    p = run_python(_LEAK_SCRIPT)
    assert p.returncode == 0, p.stderr
    growth = json.loads(p.stdout.strip().splitlines()[-1])["growth"]
    # 150 rounds of ~12 calls on MiB-sized arrays: a leak of even one result per round
    # would be hundreds of MiB
    assert growth < 8 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"
