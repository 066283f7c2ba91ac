"""docs/contract.md §7 and the ISA choice: set_num_threads/threads/OMP_NUM_THREADS/threadpoolctl,
GIL release, isa()/available_isas()/_set_isa and FASTSOFTMAX_ISA."""

import json
import os
import platform
import threading

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import assert_bits_equal, assert_softmax_close, run_python

ALL_CORES = {os.cpu_count()}
if hasattr(os, "sched_getaffinity"):
    ALL_CORES.add(len(os.sched_getaffinity(0)))  # OpenMP counts the usable cores

KNOWN_ISAS = ("avx512", "avx2", "neon", "scalar")


# ------------------------------------------------------------------------ threads
@pytest.mark.aarch64
def test_set_and_get_num_threads():
    with fs.threads(1):  # restores whatever was set before this test
        for n in (1, 2, 3, 5, 1):
            assert fs.set_num_threads(n) is None
            assert fs.get_num_threads() == n
        fs.set_num_threads(-1)
        assert fs.get_num_threads() in ALL_CORES
        assert fs.get_num_threads() >= 1


@pytest.mark.aarch64
def test_threads_context_manager_restores():
    before = fs.get_num_threads()
    with fs.threads(3):
        assert fs.get_num_threads() == 3
        with fs.threads(1):
            assert fs.get_num_threads() == 1
        assert fs.get_num_threads() == 3
        with fs.threads(-1):
            assert fs.get_num_threads() in ALL_CORES
        assert fs.get_num_threads() == 3
    assert fs.get_num_threads() == before


def test_threads_restores_on_exception():
    before = fs.get_num_threads()
    with pytest.raises(KeyError):
        with fs.threads(5):
            assert fs.get_num_threads() == 5
            raise KeyError("boom")
    assert fs.get_num_threads() == before


def test_threads_restores_after_set_inside():
    before = fs.get_num_threads()
    with fs.threads(2):
        fs.set_num_threads(4)
        assert fs.get_num_threads() == 4
    assert fs.get_num_threads() == before


def test_threads_above_core_count():
    with fs.threads(4 * os.cpu_count()):
        assert fs.get_num_threads() == 4 * os.cpu_count()
        x = np.random.default_rng(0).standard_normal((400, 500))
        assert_softmax_close(fs.softmax(x), x)


_THREADS_SCRIPT = """
import json, fastsoftmax as fs, numpy as np
r = {"default": fs.get_num_threads()}
fs.softmax(np.ones((1000, 1000)))  # a parallel call does not change it
r["after_call"] = fs.get_num_threads()
fs.set_num_threads(2)
r["override"] = fs.get_num_threads()
print(json.dumps(r))
"""


def _run_json(code, **kw):
    p = run_python(code, **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.aarch64
@pytest.mark.parametrize("omp", ["3", "1", "64"])
def test_omp_num_threads_honoured(omp):
    r = _run_json(_THREADS_SCRIPT, env_update={"OMP_NUM_THREADS": omp})
    assert r["default"] == int(omp)  # also above the core count
    assert r["after_call"] == int(omp)
    assert r["override"] == 2  # set_num_threads overrides OMP_NUM_THREADS


def test_default_threads_all_cores():
    r = _run_json(_THREADS_SCRIPT, env_remove=("OMP_NUM_THREADS",))
    assert r["default"] in ALL_CORES


@pytest.mark.aarch64
def test_threadpoolctl_limits():
    code = """
import json, fastsoftmax as fs, numpy as np
from threadpoolctl import threadpool_limits
x = np.random.default_rng(0).standard_normal((2000, 300))
ref = fs.softmax(x)
r = {"before": fs.get_num_threads()}
with threadpool_limits(1, user_api="openmp"):
    r["inside"] = fs.get_num_threads()
    r["same"] = bool((fs.softmax(x) == ref).all())
r["after"] = fs.get_num_threads()
print(json.dumps(r))
"""
    r = _run_json(code, env_remove=("OMP_NUM_THREADS",))
    assert r["inside"] == 1
    assert r["after"] == r["before"]
    assert r["same"]


@pytest.mark.aarch64
@pytest.mark.usefixtures("isa")
def test_gil_released_two_python_threads():
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((1500, 1000)).astype(np.float32),
          rng.standard_normal((1000, 1500)).astype(np.float64)]
    expect = [fs.softmax(xs[0]), fs.log_softmax(xs[1], axis=0)]
    results, errors = [None, None], []
    start = threading.Barrier(2)

    def work(i):
        try:
            start.wait()
            for _ in range(3):
                y = fs.softmax(xs[0]) if i == 0 else fs.log_softmax(xs[1], axis=0)
                assert_bits_equal(y, expect[i], f"python thread {i}")
            results[i] = y
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts)
    assert not errors, errors
    assert_softmax_close(results[0], xs[0])


# ---------------------------------------------------------------------------- ISA
@pytest.mark.aarch64
def test_available_isas():
    avail = fs.available_isas()
    assert isinstance(avail, list) and all(isinstance(a, str) for a in avail)
    assert "scalar" in avail
    assert set(avail) <= set(KNOWN_ISAS)
    assert len(set(avail)) == len(avail)
    assert fs.isa() in avail


@pytest.mark.aarch64
def test_default_isa_is_the_best_available():
    p = run_python("import fastsoftmax as fs; print(fs.isa())", env_remove=("FASTSOFTMAX_ISA",))
    assert p.returncode == 0, p.stderr
    best = next(i for i in KNOWN_ISAS if i in fs.available_isas())
    assert p.stdout.strip() == best


@pytest.mark.aarch64
def test_isa_fixture_switches(isa):
    assert fs.isa() == isa
    x = np.linspace(-5, 5, 100)
    assert_softmax_close(fs.softmax(x), x)


@pytest.mark.parametrize("name", ["bogus", "", "AVX2 ", "sse2"])
def test_set_isa_unknown(name):
    before = fs.isa()
    with pytest.raises(ValueError):
        fs._set_isa(name)
    assert fs.isa() == before


@pytest.mark.aarch64
def test_set_isa_unsupported_by_cpu_or_build():
    before = fs.isa()
    missing = [n for n in KNOWN_ISAS if n not in fs.available_isas()]
    foreign = "neon" if platform.machine().lower() in ("x86_64", "amd64", "i686") else "avx2"
    assert foreign in missing
    for name in missing:
        with pytest.raises(ValueError, match=name):
            fs._set_isa(name)
        assert fs.isa() == before


_ENV_SCRIPT = """
import json, sys
try:
    import fastsoftmax as fs, numpy as np
    y = fs.softmax(np.array([1.0, 2.0, 3.0], np.float32))
    print(json.dumps({"isa": fs.isa(), "y": [float(v) for v in y]}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "msg": str(e),
                      "valueerror": isinstance(e, ValueError)}))
"""


@pytest.mark.aarch64
@pytest.mark.parametrize("name", fs.available_isas())
def test_env_forces_isa(name):
    r = _run_json(_ENV_SCRIPT, env_update={"FASTSOFTMAX_ISA": name})
    assert r.get("isa") == name, r
    x = np.array([1.0, 2.0, 3.0], np.float32)
    assert_softmax_close(np.array(r["y"], np.float32), x)


def test_env_scalar():
    r = _run_json(_ENV_SCRIPT, env_update={"FASTSOFTMAX_ISA": "scalar"})
    assert r.get("isa") == "scalar", r


def test_env_bogus_is_a_clear_error():
    r = _run_json(_ENV_SCRIPT, env_update={"FASTSOFTMAX_ISA": "bogus"})
    assert r.get("valueerror") is True, r
    assert "FASTSOFTMAX_ISA" in r["msg"] and "bogus" in r["msg"], r


@pytest.mark.aarch64
def test_env_isa_cpu_lacks_is_an_error():
    foreign = "neon" if platform.machine().lower() in ("x86_64", "amd64") else "avx2"
    r = _run_json(_ENV_SCRIPT, env_update={"FASTSOFTMAX_ISA": foreign})
    assert r.get("valueerror") is True, r  # not a silent fallback
    assert "FASTSOFTMAX_ISA" in r["msg"] and foreign in r["msg"], r
