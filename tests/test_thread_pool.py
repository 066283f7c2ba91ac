"""docs/contract.md §7: the thread pool (engine/threads.h, engine/pool.cpp).

Bits whatever the schedule: every thread count (1, 2, 3, 8), Python threads calling at
once (the pool busy: calls run on their own threads), after fork (a new pool in the
child), inside a user's thread pool; the results checked against float64 references
too. The pool's end: an interpreter that exits with calls in flight or a warm pool."""

import multiprocessing
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import assert_bits_equal, assert_softmax_close, ref_log_softmax, ref_logsumexp, run_python

pytestmark = pytest.mark.usefixtures("isa")

# Shapes that take every parallel path: a short-row batch, rows longer than a block
# (1 row: its blocks split; 3 rows: rows split), a panel (axis 0), a strided gather.
_CASES = [
    ("batch", (4096, 96), -1, np.float32),
    ("long row", (1, 3 * (1 << 17) + 1001), -1, np.float32),
    ("long rows", (3, (1 << 17) + 7), -1, np.float64),
    ("panel", (3000, 257), 0, np.float32),
    ("many rows", (700, 1000), -1, np.float16),
]


def _x(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)


def _calls(x, axis):
    """Every family: softmax, log_softmax, logsumexp, cross-entropy (+ gradient),
    softmax_backward, a strided (gathered) input."""
    y = fs.softmax(x, axis=axis)
    out = {
        "softmax": y,
        "log_softmax": fs.log_softmax(x, axis=axis),
        "logsumexp": fs.logsumexp(x, axis=axis),
        "strided": fs.softmax(x[..., ::2], axis=axis),
        "backward": fs.softmax_backward(x, y, axis=axis),
    }
    if axis == -1 and x.dtype != np.float16:
        labels = np.arange(x.shape[0]) % x.shape[-1]
        loss, grad = fs.sparse_softmax_cross_entropy_with_logits(
            labels, x, reduction="mean", return_grad=True)
        out["xent"], out["xent_grad"] = np.asarray(loss), grad
    return out


@pytest.mark.parametrize("name,shape,axis,dtype", _CASES, ids=[c[0] for c in _CASES])
def test_bits_equal_at_every_thread_count(name, shape, axis, dtype):
    x = _x(shape, dtype)
    with fs.threads(1):
        base = _calls(x, axis)
    assert_softmax_close(base["softmax"], x, axis=axis)
    np.testing.assert_allclose(base["log_softmax"], ref_log_softmax(x.astype(np.float64), axis),
                               rtol=1e-2 if dtype == np.float16 else 1e-5, atol=1e-3)
    np.testing.assert_allclose(base["logsumexp"], ref_logsumexp(x.astype(np.float64), axis),
                               rtol=1e-3 if dtype == np.float16 else 1e-6)
    for n in (2, 3, 8):
        with fs.threads(n):
            got = _calls(x, axis)
        for k in base:
            assert_bits_equal(got[k], base[k], f"{name} {k} threads({n}) vs threads(1)")


def test_workers_are_started_for_the_threads_asked():
    x = _x((4096, 128), np.float32)
    with fs.threads(3):
        fs.softmax(x)
    assert fs._core._pool_stats()["workers"] >= 2


def _concurrent(n_threads, fn, calls=6):
    errors, start = [], threading.Barrier(n_threads)

    def work(i):
        try:
            start.wait()
            for _ in range(calls):
                fn(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts)
    assert not errors, errors


@pytest.mark.parametrize("n_threads", [4, 8])
def test_python_threads_calling_at_once(n_threads):
    # Each Python thread its own input and shape; each call with all of the pool's
    # threads: the calls that find the pool busy run on their own thread, same bits.
    shapes = [(4096, 96), (1, 3 * (1 << 17) + 1001), (3000, 257), (64, 20000)]
    xs = [_x(shapes[i % 4], np.float32, seed=i) for i in range(n_threads)]
    axes = [0 if shapes[i % 4] == (3000, 257) else -1 for i in range(n_threads)]
    with fs.threads(1):
        expect = [fs.softmax(x, axis=a) for x, a in zip(xs, axes)]
    for x, a, y in zip(xs, axes, expect):
        assert_softmax_close(y, x, axis=a)
    before = fs._core._pool_stats()["inline_calls"]
    outs = [np.empty_like(x) for x in xs]

    def one(i):
        r = fs.softmax(xs[i], axis=axes[i], out=outs[i])
        assert r is outs[i]
        assert_bits_equal(r, expect[i], f"python thread {i}")

    # Until the policy has been exercised (some call found another in progress): on a
    # loaded machine a round's calls can happen not to overlap.
    with fs.threads(2):
        for _ in range(20):
            _concurrent(n_threads, one)
            if fs._core._pool_stats()["inline_calls"] > before:
                break
    assert fs._core._pool_stats()["inline_calls"] > before


def test_inside_a_user_thread_pool():
    x = _x((2048, 512), np.float32)
    with fs.threads(1):
        expect = fs.log_softmax(x)
    with fs.threads(2), ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda _: fs.log_softmax(x), range(16)))
    for g in got:
        assert_bits_equal(g, expect, "in a ThreadPoolExecutor")


def _child_result(conn, x):
    with fs.threads(2):
        conn.send(fs.softmax(x).tobytes())
    conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork():
    x = _x((4096, 128), np.float32)
    with fs.threads(2):
        expect = fs.softmax(x)  # the parent's pool is started and warm
    assert_softmax_close(expect, x)
    pid = os.fork()
    if pid == 0:  # the child: its own pool, same bits
        ok = False
        try:
            with fs.threads(2):
                ok = all(np.array_equal(fs.softmax(x).view(np.uint32), expect.view(np.uint32))
                         for _ in range(3))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with fs.threads(2):  # and the parent's pool still works
        assert_bits_equal(fs.softmax(x), expect, "parent after fork")


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method")
def test_multiprocessing_fork_pool():
    x = _x((4096, 128), np.float32)
    with fs.threads(2):
        expect = fs.softmax(x)
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe() for _ in range(2)]  # one each: a 2 MiB message is not atomic
    ps = [ctx.Process(target=_child_result, args=(child, x)) for _, child in pipes]
    for p in ps:
        p.start()
    got = [parent.recv() for parent, _ in pipes]
    for p in ps:
        p.join(timeout=120)
        assert p.exitcode == 0
    for g in got:
        assert_bits_equal(np.frombuffer(g, np.float32).reshape(x.shape), expect, "forked process")


def _pkg_env():
    return {"PYTHONPATH": os.path.dirname(os.path.dirname(fs.__file__))}


def test_interpreter_exit_with_a_warm_pool():
    code = """
import numpy as np, fastsoftmax as fs
fs.set_num_threads(4)
x = np.random.default_rng(0).standard_normal((4096, 256)).astype(np.float32)
for _ in range(5):
    y = fs.softmax(x)
assert fs._core._pool_stats()["workers"] >= 3
print("done")
"""
    p = run_python(code, env_update=_pkg_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "done"


def test_interpreter_exit_with_calls_in_flight():
    # Daemon threads still calling when the main thread ends. The first call is made
    # before: pybind11's one-time NumPy API lookup releases the GIL in its own
    # (noexcept) guard, which an exit during that first-ever call would still abort.
    code = """
import threading, numpy as np, fastsoftmax as fs
fs.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((SHAPE)).astype(np.float32)
fs.softmax(x)
go = threading.Event()
def loop():
    go.set()
    while True:
        fs.softmax(x)
for _ in range(3):
    threading.Thread(target=loop, daemon=True).start()
go.wait()
print("exit")
"""
    for shape in ("64, 128256", "512, 4096"):  # long calls; short ones (more returns)
        for _ in range(3):
            p = run_python(code.replace("SHAPE", shape), env_update=_pkg_env(), timeout=60)
            assert p.returncode == 0, p.stderr
            assert p.stdout.strip() == "exit"


@pytest.fixture
def contention():
    """Forces the pool's contention estimate (engine/pool.cpp) for one test."""
    yield fs._core._force_contention
    fs._core._force_contention(-1)


@pytest.mark.parametrize("name,shape,axis,dtype", _CASES, ids=[c[0] for c in _CASES])
def test_bits_equal_when_the_cores_are_shared(name, shape, axis, dtype, contention):
    # Under contention a call below 2^22 elements runs on its caller's thread, larger
    # ones on the pool as before: the bits are the 1-thread bits either way.
    x = _x(shape, dtype, seed=3)
    with fs.threads(1):
        base = _calls(x, axis)
    for mode in (1, 0):
        contention(mode)
        with fs.threads(2):
            got = _calls(x, axis)
        for k in base:
            assert_bits_equal(got[k], base[k], f"{name} {k} contention {mode}")


def test_contended_calls_stay_on_their_thread(contention):
    small = _x((4096, 512), np.float32)  # 2^21 elements: below the contended minimum
    large = _x((4, 1 << 21), np.float32)  # 2^23 elements: still shared among threads
    with fs.threads(2):
        contention(1)
        assert fs._core._pool_stats()["contended"]
        before = fs._core._pool_stats()
        for _ in range(3):
            fs.softmax(small, axis=0)
        after = fs._core._pool_stats()
        assert after["pool_calls"] == before["pool_calls"]
        fs.softmax(large)
        assert fs._core._pool_stats()["pool_calls"] > after["pool_calls"]
        contention(0)
        before = fs._core._pool_stats()["pool_calls"]
        fs.softmax(small, axis=0)
        assert fs._core._pool_stats()["pool_calls"] > before
    assert_softmax_close(fs.softmax(small, axis=0), small, axis=0)
