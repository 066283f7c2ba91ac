"""sample (docs/contract.md §12) against a float64 reference that sorts.

The reference forms z = logits / T in the compute dtype (as the contract says),
then applies min_p, top_k and top_p by sorting in float64 and draws by the inverse
CDF in token-id order. Tokens are compared for given uniforms away from the CDF's
boundaries; seeded draws are checked against NumPy's own Philox, by chi-square, and
for batch / position / thread invariance.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastsoftmax as fs

pytestmark = pytest.mark.usefixtures("isa")


def ref_kept(x, T=1.0, k=0, p=1.0, minp=0.0, mask=None):
    """Boolean kept set and float64 masses of one row, per the contract's steps."""
    cdt = np.float32 if x.dtype in (np.float16, np.float32) else np.float64
    z = x.astype(cdt) / cdt(T) if T != 1.0 else x.astype(cdt)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    z = z.astype(np.float64)
    M = z.max()
    keep = z >= (M + np.log(minp) if minp > 0 else -np.inf)
    if 0 < k < z.size:
        keep &= z >= np.sort(z)[::-1][k - 1]
    e = np.where(keep, np.exp(z - M), 0.0)
    if p < 1.0:
        S = e.sum()
        above = np.array([e[z > zi].sum() for zi in z])  # mass strictly more probable
        keep &= above < p * S
        e = np.where(keep, e, 0.0)
    return keep, e


def ref_token(e, u):
    c = np.cumsum(e)
    return int(np.searchsorted(c, u * c[-1], side="right")), c


def near_boundary(c, u, tol=1e-5):
    return np.any(np.abs(c - u * c[-1]) <= tol * c[-1])


SETTINGS = [dict(), dict(T=0.7), dict(k=5), dict(k=50, p=0.9), dict(p=0.9), dict(p=1e-6),
            dict(p=1 - 1e-7), dict(minp=0.05), dict(minp=1.0), dict(T=1.5, k=20, p=0.8, minp=0.01),
            dict(k=2000), dict(k=1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{a}={b}" for a, b in s.items()) or "plain")
def test_tokens_for_given_u(dtype, setting):
    rng = np.random.default_rng(4)
    V = 3000
    x = (rng.standard_normal((24, V)) * 2).astype(dtype)
    x[1, 100:140] = x[1].max() + 1  # a plateau of maxima
    x[2, ::3] = 0.5  # many ties
    u = rng.random(24)
    args = dict(temperature=setting.get("T", 1.0), top_k=setting.get("k", 0),
                top_p=setting.get("p", 1.0), min_p=setting.get("minp", 0.0))
    r = fs.sample(x, u=u, logprobs="processed", **args)
    for i in range(24):
        keep, e = ref_kept(x[i], setting.get("T", 1.0), setting.get("k", 0),
                           setting.get("p", 1.0), setting.get("minp", 0.0))
        tok, c = ref_token(e, u[i])
        assert keep[r.tokens[i]], "a token outside the kept set"
        if not near_boundary(c, u[i]):
            assert r.tokens[i] == tok, (i, r.tokens[i], tok)
            want = np.log(e[tok] / e.sum())
            assert abs(r.logprobs[i] - want) <= 4 * np.finfo(dtype).eps * max(1, abs(want)) + 1e-6


@pytest.mark.aarch64
@pytest.mark.parametrize("V", [1, 2, 15, 16, 17, 1023, 1024, 1025, 1029, 2048 + 7, 5000])
def test_vocabulary_sizes_unfiltered(V):
    # the unfiltered draw sums blocks of 1024 tokens: short last blocks included
    rng = np.random.default_rng(V)
    x = rng.standard_normal((30, V)).astype(np.float32)
    u = rng.random(30)
    r = fs.sample(x, u=u, temperature=0.9, logprobs="processed")
    for i in range(30):
        keep, e = ref_kept(x[i], 0.9)
        tok, c = ref_token(e, u[i])
        if not near_boundary(c, u[i]):
            assert r.tokens[i] == tok
            assert abs(r.logprobs[i] - np.log(e[tok] / e.sum())) <= 1e-5


def test_kept_sets_never_violated_per_row_parameters():
    rng = np.random.default_rng(9)
    V, R = 500, 16
    x = (rng.standard_normal((R, V)) * 3).astype(np.float32)
    T = rng.uniform(0.3, 2.0, R)
    k = rng.integers(0, 60, R)
    p = rng.uniform(0.05, 1.0, R)
    mp = rng.uniform(0.0, 0.2, R)
    kept = [ref_kept(x[i], T[i], k[i], p[i], mp[i])[0] for i in range(R)]
    for off in range(40):
        r = fs.sample(x, temperature=T, top_k=k, top_p=p, min_p=mp, seed=123, offset=off,
                      logprobs=None)
        assert r.logprobs is None
        for i in range(R):
            assert kept[i][r.tokens[i]]


@pytest.mark.parametrize("setting", [dict(), dict(top_k=4), dict(top_p=0.8), dict(min_p=0.1),
                                     dict(temperature=0.5)])
def test_chi_square(setting):
    v = np.array([0.0, 1.0, 2.0, 3.0, 2.5, -1.0, 0.5, 1.5], np.float32)
    n = 120_000
    toks = fs.sample(np.broadcast_to(v, (n, v.size)), seed=2024, logprobs=None, **setting).tokens
    keep, e = ref_kept(v, setting.get("temperature", 1.0), setting.get("top_k", 0),
                       setting.get("top_p", 1.0), setting.get("min_p", 0.0))
    counts = np.bincount(toks, minlength=v.size)
    assert counts[~keep].sum() == 0
    expected = e[keep] / e.sum() * n
    assert scipy.stats.chisquare(counts[keep], expected).pvalue > 1e-4


@pytest.mark.aarch64
def test_seeded_uniforms_are_numpys_philox():
    # uniform logits over V tokens: the token is floor(u * V) (away from multiples)
    V = 4096
    x = np.zeros((50, V), np.float64)
    seeds = np.arange(50, dtype=np.uint64) * 7919 + 3
    offs = np.arange(50, dtype=np.uint64) % 5
    toks = fs.sample(x, seed=seeds, offset=offs).tokens
    for i in range(50):
        u = np.random.Generator(np.random.Philox(key=int(seeds[i]), counter=int(offs[i]))).random()
        assert toks[i] == int(u * V)
    # one int seed: the row of flat index r uses counter [offset, r, 0, 0]
    toks = fs.sample(x.reshape(5, 10, V), seed=77, offset=9).tokens.reshape(-1)
    for r in range(50):
        g = np.random.Generator(np.random.Philox(key=77, counter=[9, r, 0, 0]))
        assert toks[r] == int(g.random() * V)
    big = fs.sample(x[0], seed=2**64 - 1, offset=2**64 - 1).tokens
    assert big == int(np.random.Generator(np.random.Philox(key=2**64 - 1, counter=2**64 - 1)).random() * V)


def test_batch_position_thread_invariance():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 20000)) * 2).astype(np.float32)
    seeds = rng.integers(0, 2**63, 64).astype(np.uint64)
    args = dict(top_k=40, top_p=0.95, temperature=0.8, seed=seeds, logprobs="raw")
    with fs.threads(1):
        a = fs.sample(x, **args)
    with fs.threads(2):
        b = fs.sample(x, **args)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert a.logprobs.tobytes() == b.logprobs.tobytes()
    perm = rng.permutation(64)
    c = fs.sample(x[perm], **{**args, "seed": seeds[perm]})
    np.testing.assert_array_equal(c.tokens, a.tokens[perm])
    one = fs.sample(x[10:11], **{**args, "seed": seeds[10:11]})
    assert one.tokens[0] == a.tokens[10]


@pytest.mark.aarch64
def test_greedy_and_logprobs():
    x = np.array([[1.0, 3.0, 3.0, 2.0], [0.0, -1.0, 5.0, 5.0]], np.float32)
    r = fs.sample(x, temperature=0.0, top_logprobs=2)
    np.testing.assert_array_equal(r.tokens, [1, 2])  # lowest index on ties
    want = scipy.special.log_softmax(x.astype(np.float64), axis=-1)
    np.testing.assert_allclose(r.logprobs, want[[0, 1], [1, 2]], rtol=0, atol=4e-7 * 4)
    t = fs.top_k(x, 2, transform="log_softmax")
    np.testing.assert_array_equal(r.top_tokens, t.indices)
    np.testing.assert_array_equal(r.top_logprobs, t.values)
    p = fs.sample(x, temperature=0.0, logprobs="processed")
    np.testing.assert_array_equal(p.logprobs, [0.0, 0.0])


def test_raw_logprobs_with_temperature_and_mask():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((8, 5000)) * 3).astype(np.float32)
    w = rng.random((8, 5000)) < 0.5
    r = fs.sample(x, temperature=0.6, where=w, top_p=0.9, seed=5)
    assert w[np.arange(8), r.tokens].all()
    want = scipy.special.log_softmax(x.astype(np.float64), axis=-1)[np.arange(8), r.tokens]
    assert np.all(np.abs(r.logprobs - want) <= 4 * 2.0**-23 * np.maximum(1, np.abs(want)))


@pytest.mark.aarch64
def test_invalid_rows():
    x = np.zeros((4, 10), np.float32)
    x[0, 3] = np.nan
    x[1, 7] = np.inf
    w = np.ones((4, 10), bool)
    w[2] = False
    x[3, 2] = np.nan
    w[3, 2] = False  # a masked NaN takes no part
    r = fs.sample(x, where=w, seed=0, logprobs="processed")
    np.testing.assert_array_equal(r.tokens[:3], [-1, -1, -1])
    assert np.isnan(r.logprobs[:3]).all()
    assert r.tokens[3] != 2 and r.tokens[3] >= 0
    g = fs.sample(x, temperature=0.0, where=w)
    np.testing.assert_array_equal(g.tokens[:3], [-1, -1, -1])


def test_shapes_and_sources():
    x = np.random.default_rng(0).standard_normal((2, 3, 50)).astype(np.float32)
    r = fs.sample(x, rng=np.random.default_rng(1))
    assert r.tokens.shape == (2, 3) and r.tokens.dtype == np.int64
    assert r.logprobs.shape == (2, 3) and r.logprobs.dtype == np.float32
    assert r.top_tokens is None and r.top_logprobs is None
    s = fs.sample(x[0, 0], seed=3)
    assert isinstance(s.tokens, np.integer)
    u = np.full((2, 3), 0.5)
    np.testing.assert_array_equal(fs.sample(x, u=u).tokens, fs.sample(x, u=0.5).tokens)
    assert fs.sample(x).tokens.shape == (2, 3)  # fresh entropy


@pytest.mark.aarch64
def test_errors():
    x = np.zeros((3, 8), np.float32)
    cases = [
        (dict(temperature=-1.0), ValueError, "temperature must be >= 0"),
        (dict(temperature=np.array([1.0, np.nan, 1.0])), ValueError, r"temperature\[1\]"),
        (dict(top_p=0.0), ValueError, "top_p must be in"),
        (dict(top_p=1.5), ValueError, "top_p must be in"),
        (dict(min_p=-0.1), ValueError, "min_p must be in"),
        (dict(top_k=-1), ValueError, "top_k must be >= 0"),
        (dict(top_k=np.array([1, 2, -3])), ValueError, r"top_k\[2\]"),
        (dict(top_k=1.5), TypeError, "top_k must be an int"),
        (dict(temperature=np.ones(4)), ValueError, "does not broadcast"),
        (dict(u=1.0), ValueError, "u must be in"),
        (dict(u=0.5, seed=1), ValueError, "at most one random source"),
        (dict(offset=3), ValueError, "offset is the Philox counter"),
        (dict(seed=-1), ValueError, "seed must be in"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(rng=1), TypeError, "rng must be"),
        (dict(logprobs="all"), ValueError, "logprobs must be"),
        (dict(top_logprobs=9), ValueError, "top_logprobs must be in"),
        (dict(where=np.ones(8, int)), TypeError, "where must be a boolean"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fs.sample(x, **kw)
    with pytest.raises(ValueError, match="vocabulary"):
        fs.sample(np.float32(1.0))
    with pytest.raises(TypeError, match="logits has unsupported dtype"):
        fs.sample(x.astype(np.complex64))


# ---- the C++ fast path of fastsoftmax.sample against the Python path ----------------

def _same(a, b):
    """Identical results: types, dtypes, shapes and bits (NaN included)."""
    assert type(a) is type(b)
    for fa, fb in zip(a, b):
        assert type(fa) is type(fb)
        if fa is None:
            continue
        fa, fb = np.asarray(fa), np.asarray(fb)
        assert fa.dtype == fb.dtype and fa.shape == fb.shape and fa.strides == fb.strides
        assert fa.tobytes() == fb.tobytes()


FAST_CALLS = [
    dict(seed=3), dict(seed=3, offset=7), dict(seed=2**64 - 1, offset=2**64 - 1),
    dict(temperature=0.0, seed=1), dict(temperature=0, logprobs=None, seed=1),
    dict(temperature=0.7, seed=5), dict(temperature=2, seed=5, logprobs="processed"),
    dict(top_k=5, seed=9), dict(top_k=5, top_p=0.8, seed=9, logprobs="processed"),
    dict(top_p=0.9, seed=4), dict(min_p=0.05, seed=4, logprobs=None), dict(top_k=10**6, seed=1),
    dict(temperature=1.3, top_k=20, top_p=0.7, min_p=0.01, seed=8, logprobs="processed"),
    dict(),  # the process's generator (seeded by the test)
    # declined to the Python path: it must give the same as calling it directly
    dict(u=0.25), dict(seed=np.uint64(3)), dict(temperature=np.float32(0.5), seed=1),
    dict(top_logprobs=3, seed=1), dict(top_k=np.array(4), seed=2), dict(where=True, seed=1),
    dict(rng=np.random.default_rng(0)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 1000), (2, 3, 65), (1, 1)])
@pytest.mark.parametrize("kw", FAST_CALLS, ids=lambda d: ",".join(f"{k}" for k in d) or "default")
def test_fast_path_matches_python_path(monkeypatch, dtype, shape, kw):
    import fastsoftmax._sample as _sample

    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    if x.ndim == 2 and x.shape[0] == 3:
        x[1, 3] = np.nan  # an invalid row: token -1, logprob NaN on both paths
        x = x[:, ::-1]  # a strided view
    results = []
    for fn in (fs.sample, _sample.sample):
        monkeypatch.setattr(_sample, "_FRESH", [np.random.default_rng(11)])
        kw2 = dict(kw, rng=np.random.default_rng(0)) if "rng" in kw else kw
        try:
            results.append(fn(x, **kw2))
        except ValueError as e:  # top_logprobs beyond a short vocabulary
            results.append(str(e))
    if isinstance(results[0], str):
        assert results[0] == results[1] and "top_logprobs" in results[0]
        return
    _same(*results)
    if x.ndim == 2 and x.shape[0] == 3:
        assert results[0].tokens[1] == -1


@pytest.mark.parametrize("kw", [dict(temperature=-1.0), dict(temperature=float("nan")),
                                dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5),
                                dict(min_p=-0.1), dict(logprobs="all"), dict(offset=3),
                                dict(seed=-1), dict(seed=2**64), dict(top_k=True),
                                dict(temperature="1"), dict(bogus=1)])
def test_fast_path_errors_are_the_python_paths(kw):
    import fastsoftmax._sample as _sample

    x = np.zeros((2, 5), np.float32)
    errs = []
    for fn in (fs.sample, _sample.sample):
        with pytest.raises(Exception) as e:
            fn(x, **kw)
        errs.append((type(e.value), str(e.value)))
    assert errs[0] == errs[1]
    with pytest.raises(TypeError):
        fs.sample(x, x)  # logits is the only positional argument


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_greedy_is_the_first_argmax(dtype):
    # the one-pass argmax: lanes, accumulators and tails at every length near the vector
    # widths, ties (the lowest index wins), plateaus, -inf entries, and invalid rows
    rng = np.random.default_rng(21)
    for V in list(range(1, 70)) + [127, 128, 129, 255, 256, 257, 1000, 4099]:
        x = rng.integers(-3, 4, (6, V)).astype(dtype)  # many ties
        x[1] = rng.standard_normal(V)
        x[2, ::2] = -np.inf
        x[3] = -np.inf
        x[3, V - 1] = 1.0  # the max in the last tail lane
        x[4] = 5.0  # one plateau: token 0
        x[5, rng.integers(0, V)] = np.nan
        r = fs.sample(x, temperature=0.0, logprobs="raw", seed=1)
        want = np.argmax(np.where(np.isnan(x), -np.inf, x), axis=-1)
        want[np.max(x, axis=-1) == -np.inf] = -1  # nothing allowed (V = 1, row 2)
        assert list(r.tokens[:5]) == list(want[:5]), V
        assert r.tokens[5] == -1 and np.isnan(r.logprobs[5])
        ok = want[:5] >= 0
        lp = scipy.special.log_softmax(x[:5][ok].astype(np.float64), axis=-1)
        lp = lp[np.arange(ok.sum()), want[:5][ok]]
        assert np.allclose(r.logprobs[:5][ok], lp, rtol=1e-5, atol=1e-6)
    bad = np.array([[np.inf, 1.0], [-np.inf, -np.inf], [1.0, np.nan]], dtype)
    r = fs.sample(bad, temperature=0.0, logprobs=None, seed=1)
    assert list(r.tokens) == [-1, -1, -1]


def _ref_kept_grouped(x, k=0, p=1.0, minp=0.0):
    """ref_kept for long rows (T = 1): the mass strictly above each token by tie group
    (sorting the distinct values), not a sum per token."""
    cdt = np.float32 if x.dtype == np.float32 else np.float64
    z = x.astype(cdt).astype(np.float64)
    M = z.max()
    keep = z >= (M + np.log(minp) if minp > 0 else -np.inf)
    if 0 < k < z.size:
        keep &= z >= np.sort(z)[::-1][k - 1]
    e = np.where(keep, np.exp(z - M), 0.0)
    ambiguous, loose = False, keep
    if p < 1.0:
        S = e.sum()
        vals, inv = np.unique(z, return_inverse=True)
        gm = np.bincount(inv, weights=e, minlength=vals.size)
        above = np.cumsum(gm[::-1])[::-1] - gm  # mass of the groups more probable
        tol = (1e-6 if cdt == np.float32 else 1e-12) * S
        loose = keep & (above[inv] < p * S + tol)
        keep &= above[inv] < p * S
        e = np.where(keep, e, 0.0)
        # the compute type's masses move the sums by a few ULP of S: a group within
        # that of p * S may fall either way
        ambiguous = bool(np.any(np.abs(above[gm > 0] - p * S) <= tol))
    return keep, e, ambiguous, loose


def _level_rows():
    """Rows that put top_p's crossing in each coarse level and through its refinement."""
    rng = np.random.default_rng(21)
    V = 40000
    one = np.float32(1)
    rows = {
        "peaked": rng.standard_normal(V) * 3,
        "flat": rng.standard_normal(V) * 0.3,
        "very-peaked": rng.standard_normal(V) * 12,
        "uniform": rng.uniform(-1, 1, V),
        "ties": np.round(rng.standard_normal(V) * 16) / 8,  # tie groups across level edges
        "one-level": np.where(np.arange(V) == 7, 1.0, 0.0),  # all but the max one tie group
        "all-equal": np.full(V, 0.25),
        # three of mass 1, the rest ~e^-20 each: the crossing among the many tiny ones
        "tail-mass": np.where(np.arange(V) < 3, 0.0, -20.0 + rng.standard_normal(V) * 0.01),
        "big-tie": np.where(np.arange(V) % 2 == 0, 0.5, rng.standard_normal(V)),
        # three adjacent float32 values: levels narrower than their spacing
        "ulps": (one + rng.integers(0, 3, V).astype(np.float32) * np.finfo(np.float32).eps),
    }
    x = rng.standard_normal(V) * 2
    x[::3] = -np.inf
    rows["-inf"] = x
    return rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("setting", [dict(), dict(top_k=5000), dict(min_p=1e-3)],
                         ids=lambda s: ",".join(f"{a}={b}" for a, b in s.items()) or "top_p")
def test_top_p_levels_against_sorting(dtype, setting):
    rng = np.random.default_rng(22)
    checked = 0
    for name, row in _level_rows().items():
        x = row.astype(dtype)
        for p in (0.3, 0.9, 0.99, 0.999999):
            keep, e, ambiguous, loose = _ref_kept_grouped(x, setting.get("top_k", 0), p,
                                                   setting.get("min_p", 0.0))
            u = rng.random(6)
            r = fs.sample(np.tile(x, (6, 1)), u=u, top_p=p, logprobs="processed", **setting)
            for i in range(6):
                tok = int(r.tokens[i])
                if ambiguous:  # kept within rounding of p
                    assert loose[tok], (name, p, tok)
                    continue
                assert keep[tok], (name, p, tok)
                want, c = ref_token(e, u[i])
                if near_boundary(c, u[i]):
                    continue
                assert tok == want, (name, p, i, tok, want)
                lp = np.log(e[tok] / e.sum())
                assert abs(r.logprobs[i] - lp) <= 1e-5 * max(1.0, abs(lp)), (name, p)
                checked += 1
    assert checked >= 100  # the comparisons ran, not all skipped (264 at most)
