"""The corpus of bench/fingerprint.py: every case it hashes, by name.

CASES maps a case name to (make(rng) -> dict of input arrays, run(dict of fresh
copies) -> result, big). Inputs come only from the rng the caller seeds by the case
name; adding a case never changes another's inputs.
"""

from __future__ import annotations

import numpy as np

import fastsoftmax as fs

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
FLOATS = (F16, F32, F64)
TAG = {F16: "f16", F32: "f32", F64: "f64"}
OPS = ("softmax", "log_softmax", "logsumexp")
ISA_ORDER = ("avx512", "avx2", "neon", "scalar")

# ---------------------------------------------------------------------- registry
# name -> (make(rng) -> dict of arrays, run(dict of fresh copies) -> result, big)
CASES: dict[str, tuple] = {}


def case(name, make, run, big=False):
    assert name not in CASES and " " not in name, name
    CASES[name] = (make, run, big)


def sh(shape) -> str:
    return "x".join(map(str, shape)) if shape else "0d"


def fn(op):
    return getattr(fs, op)


# ---------------------------------------------------------------------- inputs
def normal(rng, shape, dt, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


def probs(rng, shape, dt, axis=-1):
    u = rng.random(shape) + 0.01
    return (u / u.sum(axis=axis, keepdims=True)).astype(dt)


def special_rows(rng, dt, n=37):
    """Rows of special values (float64, cast to dt by the caller)."""
    big = 6.0e4 if dt == F16 else 1.0e30
    R = []
    r = rng.standard_normal(n) * 4; r[5] = np.nan; R.append(r)                      # a NaN
    r = rng.standard_normal(n) * 4; r[3] = np.inf; R.append(r)                      # +inf
    r = rng.standard_normal(n) * 4; r[[0, 7, n - 1]] = -np.inf; R.append(r)         # -inf entries
    R.append(np.full(n, -np.inf))                                                   # all -inf
    r = rng.standard_normal(n) * 4; r[::4] = big; r[1::4] = -big; R.append(r)       # huge
    r = np.linspace(-87.0, -104.0, n); r[n // 2] = 0.0; R.append(r)                 # f32 exp edges
    R.append(np.linspace(-86.5, -104.5, n))                                         # ... no max at 0
    r = np.linspace(-700.0, -750.0, n); r[n // 3] = 0.0; R.append(r)                # f64 exp edges
    R.append(np.linspace(-700.0, -750.0, n) + 640.0)
    r = rng.standard_normal(n) * 4; r[2] = np.inf; r[9] = -np.inf; R.append(r)      # +inf and -inf
    r = np.full(n, -np.inf); r[11] = 1.5; R.append(r)                               # one finite
    r = rng.standard_normal(n); r[1] = np.nan; r[4] = np.inf; R.append(r)           # NaN and +inf
    R.append(np.full(n, 5.0))                                                       # all equal
    r = rng.standard_normal(n) * 40; R.append(r)                                    # wide range
    r = np.zeros(n); r[0] = -np.inf; r[1] = big; R.append(r)
    return np.array(R)


def long_special(rng, dt, n, kind):
    x = rng.standard_normal((1, n)) * 4
    if kind == "nan":
        x[0, 200000 % n] = np.nan
    elif kind == "pinf":
        x[0, n - 1] = np.inf
    elif kind == "ninf":
        x[0, ::3] = -np.inf
    elif kind == "allninf":
        x[:] = -np.inf
    elif kind == "edge":
        x[0] = np.linspace(-80.0, -760.0, n)
        x[0, 150000 % n] = 0.0
    return x.astype(dt)


def copy_inputs(d):
    return {k: (v.copy(order="K") if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def misaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    return m


def with_out(res, out, base):
    """A result written into ``out``: the result, that it *is* out, out's whole buffer."""
    return (res, np.asarray(res is out), base)


# ---------------------------------------------------------------------- corpus
SHAPES = [(1, 1), (1, 7), (3, 15), (5, 16), (7, 17), (9, 31), (33, 100), (64, 1000),
          (300, 128), (2, 3, 50), (200, 10)]


def build_softmax_family():
    for op in OPS:
        f = fn(op)
        # contiguous last axis, every shape and float dtype
        for dt in FLOATS:
            for s in SHAPES:
                case(f"{op}/{TAG[dt]}/c/{sh(s)}", lambda r, s=s, dt=dt: {"x": normal(r, s, dt)},
                     lambda d, f=f: f(d["x"]))
        for s in [(1, 7), (7, 17), (33, 100), (64, 1000)]:
            case(f"{op}/i64/c/{sh(s)}", lambda r, s=s: {"x": r.integers(-30, 30, s)},
                 lambda d, f=f: f(d["x"]))
        case(f"{op}/i32/c/33x100", lambda r: {"x": r.integers(-30, 30, (33, 100)).astype(np.int32)},
             lambda d, f=f: f(d["x"]))
        case(f"{op}/bool/c/9x31", lambda r: {"x": r.random((9, 31)) < 0.5}, lambda d, f=f: f(d["x"]))
        case(f"{op}/i64/axis0/33x100", lambda r: {"x": r.integers(-30, 30, (33, 100))},
             lambda d, f=f: f(d["x"], axis=0))

        for dt in FLOATS:
            t = TAG[dt]
            nsweep = 5000 if dt == F16 else 9000
            L = {  # layout name -> (input shape, how to call)
                "axis0/300x128": ((300, 128), lambda x, f: f(x, axis=0)),
                "axis0/64x1000": ((64, 1000), lambda x, f: f(x, axis=0)),
                "axis0/100x3": ((100, 3), lambda x, f: f(x, axis=0)),
                "axis0/5x16": ((5, 16), lambda x, f: f(x, axis=0)),
                f"axis0-sweep/{nsweep}x64": ((nsweep, 64), lambda x, f: f(x, axis=0)),
                "T/128x300": ((128, 300), lambda x, f: f(x.T, axis=-1)),
                "T/17x7": ((17, 7), lambda x, f: f(x.T, axis=-1)),
                "step2/33x200": ((33, 200), lambda x, f: f(x[:, ::2])),
                "step2/64x2000": ((64, 2000), lambda x, f: f(x[:, ::2])),
                "step2x3/66x300": ((66, 300), lambda x, f: f(x[::2, ::3])),
                "rev/33x100": ((33, 100), lambda x, f: f(x[:, ::-1])),
                "revrows/33x100": ((33, 100), lambda x, f: f(x[::-1])),
                "revboth-axis0/100x33": ((100, 33), lambda x, f: f(x[::-1, ::-1], axis=0)),
                "F/33x100": ((33, 100), lambda x, f: f(np.asfortranarray(x))),
                "F-axis0/33x100": ((33, 100), lambda x, f: f(np.asfortranarray(x), axis=0)),
                "bcast-rows/1x100": ((1, 100), lambda x, f: f(np.broadcast_to(x, (33, 100)))),
                "bcast-cols/33x1": ((33, 1), lambda x, f: f(np.broadcast_to(x, (33, 100)))),
                "bcast-cols-axis0/1x100": ((1, 100), lambda x, f: f(np.broadcast_to(x, (40, 100)), axis=0)),
                "axis02/6x5x40": ((6, 5, 40), lambda x, f: f(x, axis=(0, 2))),
                "axis01/4x5x30": ((4, 5, 30), lambda x, f: f(x, axis=(0, 1))),
                "axis12/4x5x30": ((4, 5, 30), lambda x, f: f(x, axis=(1, 2))),
                "axis1/4x50x30": ((4, 50, 30), lambda x, f: f(x, axis=1)),
                "axis-2-T3d/30x50x4": ((30, 50, 4), lambda x, f: f(x.transpose(2, 0, 1), axis=-1)),
                "axisNone/9x31": ((9, 31), lambda x, f: f(x, axis=None)),
                "axisNone-F/9x31": ((9, 31), lambda x, f: f(np.asfortranarray(x), axis=None)),
                "axisNone-step/20x62": ((20, 62), lambda x, f: f(x[::2, ::2], axis=None)),
                "1d/1000": ((1000,), lambda x, f: f(x)),
                "1d/3": ((3,), lambda x, f: f(x)),
                "0d": ((), lambda x, f: f(x, axis=None)),
                "empty/3x0": ((3, 0), lambda x, f: f(x)),
                "empty/0x5": ((0, 5), lambda x, f: f(x)),
                "byteswap/33x100": ((33, 100), lambda x, f: f(x.astype(x.dtype.newbyteorder()))),
                "misaligned/33x100": ((33, 100), lambda x, f: f(misaligned(x))),
                "readonly/33x100": ((33, 100), lambda x, f: (x.setflags(write=False), f(x))[1]),
            }
            for lname, (s, call) in L.items():
                case(f"{op}/{t}/{lname}", lambda r, s=s, dt=dt: {"x": normal(r, s, dt)},
                     lambda d, call=call, f=f: call(d["x"], f))

            # out=
            if op != "logsumexp":
                def r_out_c(d, f=f):
                    o = np.full_like(d["x"], 7)
                    return with_out(f(d["x"], out=o), o, o)

                def r_out_strided(d, f=f):
                    base = np.full((33, 200), 7, d["x"].dtype)
                    o = base[:, ::2]
                    return with_out(f(d["x"], out=o), o, base)

                def r_out_F(d, f=f):
                    o = np.full((33, 100), 7, d["x"].dtype, order="F")
                    return with_out(f(d["x"], out=o), o, o)

                def r_inplace(d, f=f):
                    x = d["x"]
                    return with_out(f(x, out=x), x, x)

                def r_inplace_axis0(d, f=f):
                    x = d["x"]
                    return with_out(f(x, axis=0, out=x), x, x)

                def r_inplace_step(d, f=f):
                    base = d["x"]  # (33, 200)
                    v = base[:, ::2]
                    return with_out(f(v, out=v), v, base)

                def r_overlap(d, f=f):
                    base = d["x"]  # (33, 101)
                    o = base[:, 1:]
                    return with_out(f(base[:, :100], out=o), o, base)

                mk = lambda r, dt=dt: {"x": normal(r, (33, 100), dt)}
                case(f"{op}/{t}/out-c/33x100", mk, r_out_c)
                case(f"{op}/{t}/out-strided/33x100", mk, r_out_strided)
                case(f"{op}/{t}/out-F/33x100", mk, r_out_F)
                case(f"{op}/{t}/out-inplace/33x100", mk, r_inplace)
                case(f"{op}/{t}/out-inplace-axis0/300x128",
                     lambda r, dt=dt: {"x": normal(r, (300, 128), dt)}, r_inplace_axis0)
                case(f"{op}/{t}/out-inplace-step2/33x200",
                     lambda r, dt=dt: {"x": normal(r, (33, 200), dt)}, r_inplace_step)
                case(f"{op}/{t}/out-overlap/33x101",
                     lambda r, dt=dt: {"x": normal(r, (33, 101), dt)}, r_overlap)
            else:
                def r_lse_out(d):
                    o = np.full(33, 7, d["x"].dtype)
                    return with_out(fs.logsumexp(d["x"], out=o), o, o)

                def r_lse_out_strided(d):
                    base = np.full(99, 7, d["x"].dtype)
                    o = base[::3]
                    return with_out(fs.logsumexp(d["x"], out=o), o, base)

                def r_lse_out_keep(d):
                    o = np.full((1, 100), 7, d["x"].dtype)
                    return with_out(fs.logsumexp(d["x"], axis=0, keepdims=True, out=o), o, o)

                def r_lse_out_sign(d):
                    o = np.full(33, 7, d["x"].dtype)
                    res, sg = fs.logsumexp(d["x"], out=o, return_sign=True)
                    return with_out(res, o, o) + (sg,)

                mk = lambda r, dt=dt: {"x": normal(r, (33, 100), dt)}
                case(f"logsumexp/{t}/out-c/33x100", mk, r_lse_out)
                case(f"logsumexp/{t}/out-strided/33x100", mk, r_lse_out_strided)
                case(f"logsumexp/{t}/out-keepdims-axis0/33x100", mk, r_lse_out_keep)
                case(f"logsumexp/{t}/out-sign/33x100", mk, r_lse_out_sign)

            # special values: rows, panel (transposed), gathered, masked, tempered
            mks = lambda r, dt=dt: {"x": special_rows(r, dt).astype(dt)}
            case(f"{op}/{t}/special/c", mks, lambda d, f=f: f(d["x"]))
            case(f"{op}/{t}/special/axis0", mks, lambda d, f=f: f(np.ascontiguousarray(d["x"].T), axis=0))
            case(f"{op}/{t}/special/T", mks, lambda d, f=f: f(np.asfortranarray(d["x"])))
            case(f"{op}/{t}/special/step2", mks, lambda d, f=f: f(np.repeat(d["x"], 2, axis=1)[:, ::2]))
            if op != "logsumexp":
                case(f"{op}/{t}/special/temp0.7", mks, lambda d, f=f: f(d["x"], temperature=0.7))

            def mk_sw(r, dt=dt):
                x = special_rows(r, dt).astype(dt)
                return {"x": x, "m": r.random(x.shape) < 0.8}

            case(f"{op}/{t}/special/where", mk_sw, lambda d, f=f: f(d["x"], where=d["m"]))
            wide = 1 if dt == F16 else 100.0
            case(f"{op}/{t}/wide/64x1000", lambda r, dt=dt, w=wide: {"x": normal(r, (64, 1000), dt, 40.0 * w)},
                 lambda d, f=f: f(d["x"]))
            case(f"{op}/{t}/wide-axis0/300x128", lambda r, dt=dt, w=wide: {"x": normal(r, (300, 128), dt, 40.0 * w)},
                 lambda d, f=f: f(d["x"], axis=0))
            case(f"{op}/{t}/wide-sweep/{nsweep}x64",
                 lambda r, dt=dt, n=nsweep: {"x": normal(r, (n, 64), dt, 60.0)}, lambda d, f=f: f(d["x"], axis=0))

            # where=
            mkw = lambda r, dt=dt: {"x": normal(r, (33, 100), dt), "m": r.random((33, 100)) < 0.7}
            case(f"{op}/{t}/where-rand/33x100", mkw, lambda d, f=f: f(d["x"], where=d["m"]))
            case(f"{op}/{t}/where-row/33x100", mkw, lambda d, f=f: f(d["x"], where=d["m"][0]))
            case(f"{op}/{t}/where-col/33x100", mkw, lambda d, f=f: f(d["x"], where=d["m"][:, :1]))

            def r_fullrow(d, f=f):
                m = d["m"]
                m[3] = False
                m[10, :] = False
                m[10, 50] = True
                return f(d["x"], where=m)

            case(f"{op}/{t}/where-fullrow/33x100", mkw, r_fullrow)
            case(f"{op}/{t}/where-axis0/33x100", mkw, lambda d, f=f: f(d["x"], axis=0, where=d["m"]))
            case(f"{op}/{t}/where-step2/33x100", mkw, lambda d, f=f: f(d["x"][:, ::2], where=d["m"][:, ::2]))
            case(f"{op}/{t}/where-axisNone/33x100", mkw, lambda d, f=f: f(d["x"], axis=None, where=d["m"]))
            case(f"{op}/{t}/where-small/7x17",
                 lambda r, dt=dt: {"x": normal(r, (7, 17), dt), "m": r.random((7, 17)) < 0.5},
                 lambda d, f=f: f(d["x"], where=d["m"]))

            # temperature
            if op != "logsumexp":
                for T in (0.7, 2.0):
                    case(f"{op}/{t}/temp{T}/c/64x1000", lambda r, dt=dt: {"x": normal(r, (64, 1000), dt)},
                         lambda d, f=f, T=T: f(d["x"], temperature=T))
                    case(f"{op}/{t}/temp{T}/c/7x17", lambda r, dt=dt: {"x": normal(r, (7, 17), dt)},
                         lambda d, f=f, T=T: f(d["x"], temperature=T))
                    case(f"{op}/{t}/temp{T}/where/33x100", mkw,
                         lambda d, f=f, T=T: f(d["x"], temperature=T, where=d["m"]))
                    case(f"{op}/{t}/temp{T}/step2/33x100", mkw,
                         lambda d, f=f, T=T: f(d["x"][:, ::2], temperature=T))
                    case(f"{op}/{t}/temp{T}/axis0/33x100", mkw,
                         lambda d, f=f, T=T: f(d["x"], axis=0, temperature=T))
                    case(f"{op}/{t}/temp{T}/out-inplace/33x100", mkw,
                         lambda d, f=f, T=T: with_out(f(d["x"], temperature=T, out=d["x"]), d["x"], d["x"]))

            # dtype=
            if dt == F16:
                case(f"{op}/f16/dtype-f32/33x100", lambda r: {"x": normal(r, (33, 100), F16)},
                     lambda d, f=f: f(d["x"], dtype=np.float32))
                case(f"{op}/f16/dtype-f32/axis0/300x128", lambda r: {"x": normal(r, (300, 128), F16)},
                     lambda d, f=f: f(d["x"], axis=0, dtype=np.float32))
                case(f"{op}/f16/dtype-f32/step2/33x200", lambda r: {"x": normal(r, (33, 200), F16)},
                     lambda d, f=f: f(d["x"][:, ::2], dtype=np.float32))
            if dt == F32:
                case(f"{op}/f32/dtype-f64/33x100", lambda r: {"x": normal(r, (33, 100), F32)},
                     lambda d, f=f: f(d["x"], dtype=np.float64))
                case(f"{op}/f32/dtype-f16/33x100", lambda r: {"x": normal(r, (33, 100), F32)},
                     lambda d, f=f: f(d["x"], dtype=np.float16))
        case(f"{op}/i64/dtype-f32/33x100", lambda r: {"x": r.integers(-30, 30, (33, 100))},
             lambda d, f=f: f(d["x"], dtype=np.float32))

        # long rows (> 2**17 elements: blocks, few-rows thread split, streamed finish)
        for dt, s in [(F32, (2, 300000)), (F64, (2, 300000)), (F32, (1, 262145)), (F64, (1, 262145)),
                      (F16, (1, 300000)), (F32, (3, 131073)), (F32, (1, 300000))]:
            t = TAG[dt]
            case(f"{op}/{t}/long/{sh(s)}", lambda r, s=s, dt=dt: {"x": normal(r, s, dt)},
                 lambda d, f=f: f(d["x"]))
        for dt in (F32, F64):
            t = TAG[dt]
            mkl = lambda r, dt=dt: {"x": normal(r, (1, 262145), dt), "m": r.random((1, 262145)) < 0.6}
            case(f"{op}/{t}/long-where/1x262145", mkl, lambda d, f=f: f(d["x"], where=d["m"]))
            case(f"{op}/{t}/long-step2/1x600000", lambda r, dt=dt: {"x": normal(r, (1, 600000), dt)},
                 lambda d, f=f: f(d["x"][:, ::2]))
            case(f"{op}/{t}/long-rev/2x300000", lambda r, dt=dt: {"x": normal(r, (2, 300000), dt)},
                 lambda d, f=f: f(d["x"][:, ::-1]))
            case(f"{op}/{t}/long-panel/300000x2", lambda r, dt=dt: {"x": normal(r, (300000, 2), dt)},
                 lambda d, f=f: f(d["x"], axis=0))
            case(f"{op}/{t}/long-axisNone/600x500", lambda r, dt=dt: {"x": normal(r, (600, 500), dt)},
                 lambda d, f=f: f(d["x"], axis=None))
            if op != "logsumexp":
                for T in (0.7, 2.0):
                    case(f"{op}/{t}/long-temp{T}/2x300000", lambda r, dt=dt: {"x": normal(r, (2, 300000), dt)},
                         lambda d, f=f, T=T: f(d["x"], temperature=T))
                case(f"{op}/{t}/long-temp0.7-where/1x262145", mkl,
                     lambda d, f=f: f(d["x"], temperature=0.7, where=d["m"]))
                case(f"{op}/{t}/long-inplace/2x300000", lambda r, dt=dt: {"x": normal(r, (2, 300000), dt)},
                     lambda d, f=f: with_out(f(d["x"], out=d["x"]), d["x"], d["x"]))
            for kind in ("nan", "pinf", "ninf", "allninf", "edge"):
                case(f"{op}/{t}/long-special-{kind}/1x262145",
                     lambda r, dt=dt, kind=kind: {"x": long_special(r, dt, 262145, kind)},
                     lambda d, f=f: f(d["x"]))
        case(f"{op}/f16/long-step2/1x600000", lambda r: {"x": normal(r, (1, 600000), F16)},
             lambda d, f=f: f(d["x"][:, ::2]))
        case(f"{op}/f16/long-where/1x262145",
             lambda r: {"x": normal(r, (1, 262145), F16), "m": r.random((1, 262145)) < 0.6},
             lambda d, f=f: f(d["x"], where=d["m"]))

        # batches large enough for threads, outputs >= 8 MiB (streaming stores)
        for dt, s in [(F32, (512, 4096)), (F32, (1024, 4096)), (F64, (512, 4096)), (F16, (1024, 4096)),
                      (F32, (64, 32768)), (F32, (16384, 128)), (F32, (65536, 32))]:
            t = TAG[dt]
            case(f"{op}/{t}/big/{sh(s)}", lambda r, s=s, dt=dt: {"x": normal(r, s, dt)},
                 lambda d, f=f: f(d["x"]), big=True)
        case(f"{op}/f32/big-axis0/1024x4096", lambda r: {"x": normal(r, (1024, 4096), F32)},
             lambda d, f=f: f(d["x"], axis=0), big=True)
        case(f"{op}/f32/big-sweep/20000x64", lambda r: {"x": normal(r, (20000, 64), F32)},
             lambda d, f=f: f(d["x"], axis=0), big=True)
        case(f"{op}/f64/big-axis0/512x2048", lambda r: {"x": normal(r, (512, 2048), F64)},
             lambda d, f=f: f(d["x"], axis=0), big=True)
        if op != "logsumexp":
            case(f"{op}/f32/big-out-inplace/1024x4096", lambda r: {"x": normal(r, (1024, 4096), F32)},
                 lambda d, f=f: with_out(f(d["x"], out=d["x"]), d["x"], d["x"]), big=True)
            case(f"{op}/f32/big-temp0.7/1024x4096", lambda r: {"x": normal(r, (1024, 4096), F32)},
                 lambda d, f=f: f(d["x"], temperature=0.7), big=True)


def build_logsumexp_extras():
    lse = fs.logsumexp
    for dt in FLOATS:
        t = TAG[dt]
        mk = lambda r, dt=dt: {"x": normal(r, (33, 100), dt), "b": r.random((33, 100)) * 2,
                               "s": r.standard_normal((33, 100)), "m": r.random((33, 100)) < 0.7}
        for a in (-1, 0, None, (0, 1)):
            an = "None" if a is None else str(a).replace(" ", "")
            case(f"logsumexp/{t}/keepdims-axis{an}/33x100", mk, lambda d, a=a: lse(d["x"], axis=a, keepdims=True))
            case(f"logsumexp/{t}/b-pos-axis{an}/33x100", mk, lambda d, a=a: lse(d["x"], axis=a, b=d["b"]))
        case(f"logsumexp/{t}/keepdims-3d-axis1/4x50x30", lambda r, dt=dt: {"x": normal(r, (4, 50, 30), dt)},
             lambda d: lse(d["x"], axis=1, keepdims=True))
        case(f"logsumexp/{t}/b-mixed/33x100", mk, lambda d: lse(d["x"], b=d["s"]))
        case(f"logsumexp/{t}/b-mixed-sign/33x100", mk, lambda d: lse(d["x"], b=d["s"], return_sign=True))

        def r_bzeros(d):
            b = d["s"].copy()
            b[:, ::3] = 0.0
            b[5] = 0.0
            return lse(d["x"], b=b, return_sign=True)

        case(f"logsumexp/{t}/b-zeros-sign/33x100", mk, r_bzeros)
        case(f"logsumexp/{t}/b-row/33x100", mk, lambda d: lse(d["x"], b=d["s"][0]))
        case(f"logsumexp/{t}/b-scalar/33x100", mk, lambda d: lse(d["x"], b=2.5))
        case(f"logsumexp/{t}/b-int/33x100", mk, lambda d: lse(d["x"], b=np.arange(100) % 4 - 1))
        case(f"logsumexp/{t}/b-samedtype/33x100", mk, lambda d: lse(d["x"], b=d["b"].astype(d["x"].dtype)))
        case(f"logsumexp/{t}/b-f32/33x100", mk, lambda d: lse(d["x"], b=d["b"].astype(np.float32)))
        case(f"logsumexp/{t}/b-where/33x100", mk, lambda d: lse(d["x"], b=d["s"], where=d["m"], return_sign=True))
        case(f"logsumexp/{t}/b-step2/33x100", mk, lambda d: lse(d["x"][:, ::2], b=d["s"][:, ::2], return_sign=True))
        case(f"logsumexp/{t}/b-keepdims-axis0/33x100", mk,
             lambda d: lse(d["x"], axis=0, b=d["s"], keepdims=True, return_sign=True))
        case(f"logsumexp/{t}/b-axisNone/33x100", mk, lambda d: lse(d["x"], axis=None, b=d["s"], return_sign=True))
        case(f"logsumexp/{t}/sign/33x100", mk, lambda d: lse(d["x"], return_sign=True))
        case(f"logsumexp/{t}/sign-axis0/33x100", mk, lambda d: lse(d["x"], axis=0, return_sign=True))
        case(f"logsumexp/{t}/sign-where/33x100", mk, lambda d: lse(d["x"], where=d["m"], return_sign=True))
        case(f"logsumexp/{t}/sign-axisNone/33x100", mk, lambda d: lse(d["x"], axis=None, return_sign=True))
        case(f"logsumexp/{t}/sign-empty/3x0", lambda r, dt=dt: {"x": np.zeros((3, 0), dt)},
             lambda d: lse(d["x"], return_sign=True))
        case(f"logsumexp/{t}/where-keepdims/33x100", mk, lambda d: lse(d["x"], where=d["m"], keepdims=True))
        def mks(r, dt=dt):
            x = special_rows(r, dt).astype(dt)
            return {"x": x, "s": r.standard_normal(x.shape)}

        case(f"logsumexp/{t}/special-sign", mks, lambda d: lse(d["x"], return_sign=True))
        case(f"logsumexp/{t}/special-b-sign", mks, lambda d: lse(d["x"], b=d["s"], return_sign=True))
        case(f"logsumexp/{t}/special-b-pos", mks, lambda d: lse(d["x"], b=np.abs(d["s"])))
    # weighted sums cancelling exactly / to tiny values (the std::exp redo)
    case("logsumexp/f64/b-cancel", lambda r: {"x": np.array([[0.0, 0.0, -1.0], [1.0, 1.0, 1.0], [0.0, -1.0, 2.0]])},
         lambda d: lse(d["x"], b=np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0], [1e-300, 2e-300, 0.0]]), return_sign=True))
    case("logsumexp/f64/b-tiny", lambda r: {"x": normal(r, (4, 50), F64), "b": r.random((4, 50)) * 1e-300},
         lambda d: lse(d["x"], b=d["b"], return_sign=True))
    case("logsumexp/f64/b-neg-nosign", lambda r: {"x": normal(r, (4, 50), F64)},
         lambda d: lse(d["x"], b=-1.0))
    case("logsumexp/f32/b-long/2x300000",
         lambda r: {"x": normal(r, (2, 300000), F32), "s": r.standard_normal((2, 300000))},
         lambda d: lse(d["x"], b=d["s"], return_sign=True))
    case("logsumexp/f64/b-long-pos/1x262145",
         lambda r: {"x": normal(r, (1, 262145), F64), "b": r.random((1, 262145))},
         lambda d: lse(d["x"], b=d["b"]))
    case("logsumexp/f32/sign-long/2x300000", lambda r: {"x": normal(r, (2, 300000), F32)},
         lambda d: lse(d["x"], return_sign=True, keepdims=True))


# ---------------------------------------------------------------------- cross-entropy
def sparse_labels(r, shape, C, ignore=None, frac=0.0):
    lab = r.integers(0, C, shape)
    if ignore is not None and frac:
        lab[r.random(shape) < frac] = ignore
    return lab


def build_xent():
    sp = fs.sparse_softmax_cross_entropy_with_logits
    de = fs.softmax_cross_entropy_with_logits
    REDS = ("none", "sum", "mean")
    for dt in FLOATS:
        t = TAG[dt]
        # sparse: full option product on two shapes, a subset on the others
        for s in [(7, 17), (64, 1000), (1, 1), (300, 128), (200, 10), (2, 3, 50), (5, 16)]:
            full = s in ((7, 17), (64, 1000))
            combos = [(rd, ls, g) for rd in REDS for ls in (0.0, 0.1) for g in (False, True)] if full \
                else [("none", 0.0, True), ("mean", 0.1, True), ("sum", 0.0, False)]
            mk = lambda r, s=s, dt=dt: {"x": normal(r, s, dt), "l": sparse_labels(r, s[:-1], s[-1])}
            for rd, ls, g in combos:
                case(f"sparse/{t}/{sh(s)}/{rd}/ls{ls}/grad{int(g)}", mk,
                     lambda d, rd=rd, ls=ls, g=g: sp(d["l"], d["x"], reduction=rd, label_smoothing=ls, return_grad=g))
        mk = lambda r, dt=dt: {"x": normal(r, (64, 1000), dt), "l": sparse_labels(r, (64,), 1000, -100, 0.3),
                               "l3": sparse_labels(r, (64,), 1000, 3, 0.3)}
        for rd in REDS:
            case(f"sparse/{t}/ignore-100/{rd}", mk,
                 lambda d, rd=rd: sp(d["l"], d["x"], reduction=rd, ignore_index=-100, return_grad=True))
            case(f"sparse/{t}/ignore3-ls0.1/{rd}", mk,
                 lambda d, rd=rd: sp(d["l3"], d["x"], reduction=rd, ignore_index=3, label_smoothing=0.1,
                                     return_grad=True))
        case(f"sparse/{t}/ignore-all/mean", mk,
             lambda d: sp(np.full(64, -100), d["x"], reduction="mean", ignore_index=-100, return_grad=True))
        case(f"sparse/{t}/labels-i32", mk, lambda d: sp(d["l3"].astype(np.int32), d["x"], return_grad=True))
        case(f"sparse/{t}/labels-u64", mk, lambda d: sp(d["l3"].astype(np.uint64), d["x"], reduction="sum"))
        mk2 = lambda r, dt=dt: {"x": normal(r, (64, 2000), dt), "l": sparse_labels(r, (64,), 1000)}
        case(f"sparse/{t}/step2/64x2000", mk2, lambda d: sp(d["l"], d["x"][:, ::2], return_grad=True))
        case(f"sparse/{t}/step2-ls0.1-mean/64x2000", mk2,
             lambda d: sp(d["l"], d["x"][:, ::2], reduction="mean", label_smoothing=0.1, return_grad=True))
        mk3 = lambda r, dt=dt: {"x": normal(r, (128, 300), dt), "l": sparse_labels(r, (300,), 128)}
        case(f"sparse/{t}/T/128x300", mk3, lambda d: sp(d["l"], d["x"].T, return_grad=True))
        case(f"sparse/{t}/rev/300x128", mk3,
             lambda d: sp(d["l"][:128], d["x"].reshape(300, 128)[:128, ::-1], label_smoothing=0.1, return_grad=True))
        case(f"sparse/{t}/1d/300", mk3, lambda d: sp(d["l"][0], d["x"][0], return_grad=True))

        def mk_special(r, dt=dt):
            x = special_rows(r, dt).astype(dt)
            lab = r.integers(0, x.shape[1], x.shape[0])
            lab[2] = 0  # a -inf logit at the label
            lab[10] = 11
            return {"x": x, "l": lab}

        for rd in REDS:
            for ls in (0.0, 0.1):
                case(f"sparse/{t}/special/{rd}/ls{ls}", mk_special,
                     lambda d, rd=rd, ls=ls: sp(d["l"], d["x"], reduction=rd, label_smoothing=ls, return_grad=True))
        case(f"sparse/{t}/special-nograd", mk_special, lambda d: sp(d["l"], d["x"], label_smoothing=0.1))

        # dense
        for s in [(7, 17), (64, 1000), (1, 1), (300, 128), (2, 3, 50)]:
            full = s in ((7, 17), (64, 1000))
            combos = [(rd, ls, g) for rd in REDS for ls in (0.0, 0.1) for g in (False, True)] if full \
                else [("none", 0.0, True), ("mean", 0.1, True), ("sum", 0.0, False)]
            mk = lambda r, s=s, dt=dt: {"x": normal(r, s, dt), "p": probs(r, s, dt)}
            for rd, ls, g in combos:
                case(f"dense/{t}/{sh(s)}/{rd}/ls{ls}/grad{int(g)}", mk,
                     lambda d, rd=rd, ls=ls, g=g: de(d["p"], d["x"], reduction=rd, label_smoothing=ls, return_grad=g))

        def mk_lab(r, dt=dt):
            x = normal(r, (64, 1000), dt)
            onehot = np.zeros((64, 1000), bool)
            onehot[np.arange(64), r.integers(0, 1000, 64)] = True
            return {"x": x, "p64": probs(r, (64, 1000), F64), "oh": onehot,
                    "cnt": r.integers(0, 3, (64, 1000)), "u": r.standard_normal((64, 1000)),
                    "row": probs(r, (1000,), dt), "col": r.random((64, 1)), "m": r.random((64, 1000))}

        LAB = {
            "p64": lambda d: d["p64"],
            "p32": lambda d: d["p64"].astype(np.float32),
            "p16": lambda d: d["p64"].astype(np.float16),
            "bool": lambda d: d["oh"],
            "i64": lambda d: d["cnt"],
            "i32": lambda d: d["cnt"].astype(np.int32),
            "i8": lambda d: d["cnt"].astype(np.int8),
            "u8": lambda d: d["oh"].astype(np.uint8),
            "signed": lambda d: d["u"],
            "bcast-row": lambda d: d["row"],
            "bcast-col": lambda d: d["col"],
            "byteswap": lambda d: d["p64"].astype(">f8"),
            "step2": lambda d: np.repeat(d["p64"], 2, axis=1)[:, ::2],
        }
        for ln, lf in LAB.items():
            case(f"dense/{t}/labels-{ln}/grad", mk_lab, lambda d, lf=lf: de(lf(d), d["x"], return_grad=True))
            case(f"dense/{t}/labels-{ln}/mean-ls0.1", mk_lab,
                 lambda d, lf=lf: de(lf(d), d["x"], reduction="mean", label_smoothing=0.1))
        case(f"dense/{t}/axis0/64x1000", mk_lab, lambda d: de(d["p64"], d["x"], axis=0, return_grad=True))
        case(f"dense/{t}/axis0-ls0.1-sum/64x1000", mk_lab,
             lambda d: de(d["oh"], d["x"], axis=0, reduction="sum", label_smoothing=0.1, return_grad=True))
        case(f"dense/{t}/T/64x1000", mk_lab, lambda d: de(d["p64"].T, d["x"].T, return_grad=True))
        case(f"dense/{t}/step2/64x1000", mk_lab, lambda d: de(d["p64"][:, ::2], d["x"][:, ::2], return_grad=True))
        case(f"dense/{t}/rev/64x1000", mk_lab, lambda d: de(d["p64"], d["x"][:, ::-1], return_grad=True))
        mk3d = lambda r, dt=dt: {"x": normal(r, (6, 5, 40), dt), "p": probs(r, (6, 5, 40), F64)}
        case(f"dense/{t}/axis02/6x5x40", mk3d, lambda d: de(d["p"], d["x"], axis=(0, 2), return_grad=True))
        case(f"dense/{t}/axis1/6x5x40", mk3d, lambda d: de(d["p"], d["x"], axis=1, return_grad=True))
        case(f"dense/{t}/axisNone/6x5x40", mk3d,
             lambda d: de(d["p"], d["x"], axis=None, reduction="mean", return_grad=True))
        case(f"dense/{t}/axis-empty/6x5x40", mk3d, lambda d: de(d["p"], d["x"], axis=(), return_grad=True))

        def mk_dspecial(r, dt=dt):
            x = special_rows(r, dt).astype(dt)
            p = probs(r, x.shape, F64)
            p[2, [0, 7]] = 0.0  # zero target at some -inf logits
            p[3] = 0.0  # all -inf row, zero targets
            p[10] = 0.0
            p[10, 11] = 1.0
            return {"x": x, "p": p}

        for rd in REDS:
            for ls in (0.0, 0.1):
                case(f"dense/{t}/special/{rd}/ls{ls}", mk_dspecial,
                     lambda d, rd=rd, ls=ls: de(d["p"], d["x"], reduction=rd, label_smoothing=ls, return_grad=True))

    # long rows, streaming gradients
    for dt, s in [(F32, (2, 300000)), (F64, (2, 300000)), (F32, (1, 262145)), (F64, (1, 262145)),
                  (F16, (1, 300000)), (F32, (4, 20000)), (F64, (4, 20000))]:
        t = TAG[dt]
        mk = lambda r, s=s, dt=dt: {"x": normal(r, s, dt), "l": sparse_labels(r, s[:-1], s[-1]),
                                    "p": probs(r, s, dt)}
        for rd, ls, g in [("none", 0.0, True), ("mean", 0.1, True), ("sum", 0.1, False), ("none", 0.0, False)]:
            case(f"sparse/{t}/long/{sh(s)}/{rd}/ls{ls}/grad{int(g)}", mk,
                 lambda d, rd=rd, ls=ls, g=g: sp(d["l"], d["x"], reduction=rd, label_smoothing=ls, return_grad=g))
            case(f"dense/{t}/long/{sh(s)}/{rd}/ls{ls}/grad{int(g)}", mk,
                 lambda d, rd=rd, ls=ls, g=g: de(d["p"], d["x"], reduction=rd, label_smoothing=ls, return_grad=g))
    for dt in (F32, F64):
        t = TAG[dt]
        mk = lambda r, dt=dt: {"x": normal(r, (1, 600000), dt), "l": sparse_labels(r, (1,), 300000),
                               "p": probs(r, (1, 600000), dt)}
        case(f"sparse/{t}/long-step2/1x600000", mk, lambda d: sp(d["l"], d["x"][:, ::2], return_grad=True))
        case(f"dense/{t}/long-step2/1x600000", mk,
             lambda d: de(d["p"][:, ::2], d["x"][:, ::2], label_smoothing=0.1, return_grad=True))
        for kind in ("nan", "pinf", "ninf", "allninf", "edge"):
            mk = lambda r, dt=dt, kind=kind: {"x": long_special(r, dt, 262145, kind), "l": np.array([150000]),
                                              "p": probs(r, (1, 262145), F64)}
            case(f"sparse/{t}/long-special-{kind}/1x262145", mk,
                 lambda d: sp(d["l"], d["x"], label_smoothing=0.1, return_grad=True))
            case(f"dense/{t}/long-special-{kind}/1x262145", mk, lambda d: de(d["p"], d["x"], return_grad=True))
        case(f"dense/{t}/long-axis0/300000x2",
             lambda r, dt=dt: {"x": normal(r, (300000, 2), dt), "p": probs(r, (300000, 2), dt, axis=0)},
             lambda d: de(d["p"], d["x"], axis=0, return_grad=True))
    for dt, s in [(F32, (1024, 4096)), (F32, (512, 4096)), (F64, (512, 4096)), (F16, (1024, 4096)),
                  (F32, (64, 32768)), (F32, (16384, 128))]:
        t = TAG[dt]
        mk = lambda r, s=s, dt=dt: {"x": normal(r, s, dt), "l": sparse_labels(r, s[:-1], s[-1]),
                                    "p": probs(r, s, dt)}
        case(f"sparse/{t}/big/{sh(s)}/grad", mk, lambda d: sp(d["l"], d["x"], return_grad=True), big=True)
        case(f"sparse/{t}/big/{sh(s)}/mean-ls0.1", mk,
             lambda d: sp(d["l"], d["x"], reduction="mean", label_smoothing=0.1), big=True)
        case(f"dense/{t}/big/{sh(s)}/grad", mk, lambda d: de(d["p"], d["x"], return_grad=True), big=True)
        case(f"dense/{t}/big/{sh(s)}/mean-ls0.1", mk,
             lambda d: de(d["p"], d["x"], reduction="mean", label_smoothing=0.1), big=True)
    case("dense/f32/big-axis0/4096x1024",
         lambda r: {"x": normal(r, (4096, 1024), F32), "p": probs(r, (4096, 1024), F32, axis=0)},
         lambda d: de(d["p"], d["x"], axis=0, return_grad=True), big=True)


# ---------------------------------------------------------------------- backward
def build_backward():
    def ys(r, s, dt, log, axis=-1):
        """y values of the right kind (no NumPy transcendentals: portable inputs)."""
        if log:
            return (-r.random(s) * 12.0).astype(dt)  # log-probabilities (<= 0)
        return probs(r, s, dt, axis)

    for name, bw, log in (("softmax_backward", fs.softmax_backward, False),
                          ("log_softmax_backward", fs.log_softmax_backward, True)):
        for dt in FLOATS:
            t = TAG[dt]
            for s in [(1, 1), (7, 17), (64, 1000), (300, 128), (2, 3, 50), (200, 10), (5, 16)]:
                case(f"{name}/{t}/c/{sh(s)}", lambda r, s=s, dt=dt, log=log: {"g": normal(r, s, dt, 1.0), "y": ys(r, s, dt, log)},
                     lambda d, bw=bw: bw(d["g"], d["y"]))
            mk = lambda r, dt=dt, log=log: {"g": normal(r, (64, 1000), dt, 1.0), "y": ys(r, (64, 1000), dt, log),
                                            "g2": normal(r, (64, 2000), dt, 1.0), "y2": ys(r, (64, 2000), dt, log),
                                            "gr": normal(r, (1000,), dt, 1.0), "yp": normal(r, (64, 1000), dt, 1.0)}
            case(f"{name}/{t}/axis0/64x1000", mk, lambda d, bw=bw: bw(d["g"], d["y"], axis=0))
            case(f"{name}/{t}/T/64x1000", mk, lambda d, bw=bw: bw(d["g"].T, d["y"].T, axis=0))
            case(f"{name}/{t}/F/64x1000", mk, lambda d, bw=bw: bw(np.asfortranarray(d["g"]), np.asfortranarray(d["y"])))
            case(f"{name}/{t}/step2/64x1000", mk, lambda d, bw=bw: bw(d["g2"][:, ::2], d["y2"][:, ::2]))
            case(f"{name}/{t}/step2-g/64x1000", mk, lambda d, bw=bw: bw(d["g2"][:, ::2], d["y"]))
            case(f"{name}/{t}/rev/64x1000", mk, lambda d, bw=bw: bw(d["g"][:, ::-1], d["y"]))
            case(f"{name}/{t}/bcast-grad/64x1000", mk, lambda d, bw=bw: bw(d["gr"], d["y"]))
            case(f"{name}/{t}/bcast-grad-axis0/64x1000", mk, lambda d, bw=bw: bw(d["gr"], d["y"], axis=0))
            case(f"{name}/{t}/axisNone/64x1000", mk, lambda d, bw=bw: bw(d["g"], d["y"], axis=None))
            case(f"{name}/{t}/axis-tuple/64x1000", mk,
                 lambda d, bw=bw: bw(d["g"].reshape(8, 8, 1000), d["y"].reshape(8, 8, 1000), axis=(0, 2)))
            case(f"{name}/{t}/y-positive/64x1000", mk, lambda d, bw=bw: bw(d["g"], d["yp"]))
            case(f"{name}/{t}/mixed-f64-y/64x1000", mk, lambda d, bw=bw: bw(d["g"], d["y"].astype(np.float64)))
            case(f"{name}/{t}/int-grad/64x1000", mk, lambda d, bw=bw: bw(np.round(d["g"] * 3).astype(np.int64), d["y"]))

            def r_out(d, bw=bw):
                o = np.full_like(d["g"], 7)
                return with_out(bw(d["g"], d["y"], out=o), o, o)

            def r_out_strided(d, bw=bw):
                base = np.full((64, 2000), 7, d["g"].dtype)
                o = base[:, ::2]
                return with_out(bw(d["g"], d["y"], out=o), o, base)

            case(f"{name}/{t}/out-c/64x1000", mk, r_out)
            case(f"{name}/{t}/out-strided/64x1000", mk, r_out_strided)
            case(f"{name}/{t}/out-inplace-g/64x1000", mk,
                 lambda d, bw=bw: with_out(bw(d["g"], d["y"], out=d["g"]), d["g"], d["g"]))
            case(f"{name}/{t}/out-inplace-y/64x1000", mk,
                 lambda d, bw=bw: with_out(bw(d["g"], d["y"], out=d["y"]), d["y"], d["y"]))
            case(f"{name}/{t}/out-inplace-step2/64x1000", mk,
                 lambda d, bw=bw: with_out(bw(d["g2"][:, ::2], d["y2"][:, ::2], out=d["g2"][:, ::2]), None, d["g2"]))
            case(f"{name}/{t}/out-overlap/64x1000", mk,
                 lambda d, bw=bw: with_out(bw(d["g2"][:, :1000], d["y"], out=d["g2"][:, 1:1001]), None, d["g2"]))

            def mk_sp(r, dt=dt, log=log):
                g = normal(r, (15, 37), dt, 1.0)
                g[0, 5] = np.nan
                g[1, 3] = np.inf
                y = ys(r, (15, 37), dt, log)
                y[2, 4] = -np.inf if log else 0.0
                y[3, 6] = np.nan
                return {"g": g, "y": y}

            case(f"{name}/{t}/special/15x37", mk_sp, lambda d, bw=bw: bw(d["g"], d["y"]))
        for dt, s in [(F32, (2, 300000)), (F64, (2, 300000)), (F32, (1, 262145)), (F64, (1, 262145)),
                      (F16, (1, 300000))]:
            t = TAG[dt]
            mk = lambda r, s=s, dt=dt, log=log: {"g": normal(r, s, dt, 1.0), "y": ys(r, s, dt, log)}
            case(f"{name}/{t}/long/{sh(s)}", mk, lambda d, bw=bw: bw(d["g"], d["y"]))
            case(f"{name}/{t}/long-inplace/{sh(s)}", mk,
                 lambda d, bw=bw: with_out(bw(d["g"], d["y"], out=d["g"]), d["g"], d["g"]))
            case(f"{name}/{t}/long-bcast/{sh(s)}", mk, lambda d, bw=bw: bw(d["g"][0], d["y"]))
        for dt in (F32, F64):
            t = TAG[dt]
            mk = lambda r, dt=dt, log=log: {"g": normal(r, (1, 600000), dt, 1.0), "y": ys(r, (1, 600000), dt, log)}
            case(f"{name}/{t}/long-step2/1x600000", mk, lambda d, bw=bw: bw(d["g"][:, ::2], d["y"][:, ::2]))
            mk = lambda r, dt=dt, log=log: {"g": normal(r, (300000, 2), dt, 1.0), "y": ys(r, (300000, 2), dt, log, 0)}
            case(f"{name}/{t}/long-axis0/300000x2", mk, lambda d, bw=bw: bw(d["g"], d["y"], axis=0))
            mk = lambda r, dt=dt, log=log: {"g": normal(r, (1, 262145), dt, 1.0), "y": normal(r, (1, 262145), dt, 1.0)}
            case(f"{name}/{t}/long-y-positive/1x262145", mk, lambda d, bw=bw: bw(d["g"], d["y"]))
        for dt, s in [(F32, (1024, 4096)), (F32, (512, 4096)), (F64, (512, 4096)), (F16, (1024, 4096)),
                      (F32, (16384, 128))]:
            t = TAG[dt]
            mk = lambda r, s=s, dt=dt, log=log: {"g": normal(r, s, dt, 1.0), "y": ys(r, s, dt, log)}
            case(f"{name}/{t}/big/{sh(s)}", mk, lambda d, bw=bw: bw(d["g"], d["y"]), big=True)
        mk = lambda r, log=log: {"g": normal(r, (1024, 4096), F32, 1.0), "y": ys(r, (1024, 4096), F32, log)}
        case(f"{name}/f32/big-inplace/1024x4096", mk,
             lambda d, bw=bw: with_out(bw(d["g"], d["y"], out=d["g"]), d["g"], d["g"]), big=True)
        case(f"{name}/f32/big-axis0/1024x4096", mk, lambda d, bw=bw: bw(d["g"], d["y"], axis=0), big=True)


def build_bfloat16():
    """bfloat16 (ml_dtypes.bfloat16; only when ml_dtypes imports: the bench extra has it):
    the softmax family's paths, dtype= both ways, top_k (values, transform=) and sample
    (given u; logprobs and top_logprobs float32)."""
    try:
        import ml_dtypes
    except ImportError:
        return
    B = np.dtype(ml_dtypes.bfloat16)

    def bn(r, s, scale=4.0):
        return normal(r, s, F32, scale).astype(B)

    for op in OPS:
        f = fn(op)
        for s in [(33, 100), (7, 17), (5, 1000), (1, 262145), (2, 300000)]:
            case(f"{op}/bf16/c/{sh(s)}", lambda r, s=s: {"x": bn(r, s)}, lambda d, f=f: f(d["x"]))
        case(f"{op}/bf16/axis0/300x128", lambda r: {"x": bn(r, (300, 128))},
             lambda d, f=f: f(d["x"], axis=0))
        case(f"{op}/bf16/axis0/5000x40", lambda r: {"x": bn(r, (5000, 40))},
             lambda d, f=f: f(d["x"], axis=0))
        case(f"{op}/bf16/step2/33x200", lambda r: {"x": bn(r, (33, 200))},
             lambda d, f=f: f(d["x"][:, ::2]))
        case(f"{op}/bf16/where/33x100",
             lambda r: {"x": bn(r, (33, 100)), "m": r.random((33, 100)) < 0.7},
             lambda d, f=f: f(d["x"], where=d["m"]))
        case(f"{op}/bf16/special/15x37",
             lambda r: {"x": special_rows(r, F32).astype(F32).astype(B)}, lambda d, f=f: f(d["x"]))
        case(f"{op}/f32/dtype-bf16/33x100", lambda r: {"x": normal(r, (33, 100), F32)},
             lambda d, f=f, B=B: f(d["x"], dtype=B))
        case(f"{op}/bf16/dtype-f32/33x100", lambda r: {"x": bn(r, (33, 100))},
             lambda d, f=f: f(d["x"], dtype=np.float32))
        if op != "logsumexp":
            case(f"{op}/bf16/temp0.7/33x100", lambda r: {"x": bn(r, (33, 100))},
                 lambda d, f=f: f(d["x"], temperature=0.7))
            case(f"{op}/bf16/out-inplace/33x100", lambda r: {"x": bn(r, (33, 100))},
                 lambda d, f=f: with_out(f(d["x"], out=d["x"]), d["x"], d["x"]))
    for tr in (None, "softmax", "log_softmax"):
        for s in [(9, 3000), (2, 262145)]:
            case(f"top_k/bf16/{tr}/{sh(s)}", lambda r, s=s: {"x": bn(r, s)},
                 lambda d, tr=tr: tuple(fs.top_k(d["x"], 7, transform=tr)))
        case(f"top_k/bf16/{tr}/axis0-smallest/300x128", lambda r: {"x": bn(r, (300, 128))},
             lambda d, tr=tr: tuple(fs.top_k(d["x"], 5, axis=0, largest=False, transform=tr)))
    settings = {"plain": {}, "T0.7-k50-p0.9": dict(temperature=0.7, top_k=50, top_p=0.9),
                "p0.9": dict(top_p=0.9), "minp0.05": dict(min_p=0.05)}
    for name, kw in settings.items():
        for lp in ("raw", "processed"):
            case(f"sample/bf16/{name}/{lp}/16x5000",
                 lambda r: {"x": bn(r, (16, 5000), 2.0), "u": r.random(16)},
                 lambda d, kw=kw, lp=lp: tuple(v for v in fs.sample(
                     d["x"], u=d["u"], logprobs=lp, top_logprobs=3, **kw) if v is not None))
    case("sample/bf16/step2-where/8x10000",
         lambda r: {"x": bn(r, (8, 10000), 2.0), "m": r.random((8, 5000)) < 0.5, "u": r.random(8)},
         lambda d: tuple(fs.sample(d["x"][:, ::2], where=d["m"], u=d["u"], temperature=1.3)[:2]))


build_softmax_family()
build_logsumexp_extras()
build_xent()
build_backward()
build_bfloat16()
