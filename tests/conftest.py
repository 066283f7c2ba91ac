"""Shared fixtures: the ISA parametrization and the Hypothesis profile.

Every test that runs a kernel requests the ``isa`` fixture (most modules through
``pytestmark = pytest.mark.usefixtures("isa")``), so it runs once per instruction set
this build and CPU offer; the test id is the ISA name.  FASTSOFTMAX_TEST_ISAS (a
comma-separated list) limits it to those ISAs: .ci/aarch64.sh runs the suite once per
aarch64 ISA that way, each run with that ISA also the default (FASTSOFTMAX_ISA).
"""

import importlib.util
import os
import pathlib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

import fastsoftmax

ISAS = list(fastsoftmax.available_isas())
if os.environ.get("FASTSOFTMAX_TEST_ISAS"):
    _wanted = os.environ["FASTSOFTMAX_TEST_ISAS"].split(",")
    if not set(_wanted) <= set(ISAS):
        raise pytest.UsageError(f"FASTSOFTMAX_TEST_ISAS={','.join(_wanted)}: this build and "
                                f"CPU offer {ISAS}")
    ISAS = [i for i in ISAS if i in _wanted]
FUNC_NAMES = ("softmax", "log_softmax", "logsumexp")

# The test hooks (fastsoftmax._testing) are built by the README's test command
# (-Ccmake.define.FASTSOFTMAX_TEST_HOOKS=ON) and never shipped in a wheel; tests that need
# them carry the `hooks` marker, tests that compile csrc/ the `source` marker. Without
# what they need they do not skip: the run stops (pytest_collection_modifyitems) unless
# they were deselected, as tools/build_wheel.py does with -m "not hooks and not source".
HAVE_HOOKS = importlib.util.find_spec("fastsoftmax._testing") is not None
HAVE_SOURCE = (pathlib.Path(__file__).resolve().parent.parent / "csrc").is_dir()
# ml_dtypes (bfloat16 arrays) is in the test extra, not a run-time dependency; it has no
# musllinux wheels, so the musllinux wheel test deselects -m "not bfloat16"
HAVE_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None
_NEEDS = {
    "hooks": (HAVE_HOOKS, "fastsoftmax._testing (the test hooks), which this install lacks: "
              "install with the README's test command (pip install -v \".[test]\" "
              "-Ccmake.define.FASTSOFTMAX_TEST_HOOKS=ON)"),
    "source": (HAVE_SOURCE, "the source tree (csrc/) beside tests/"),
    "bfloat16": (HAVE_ML_DTYPES, "ml_dtypes (bfloat16 arrays; in the test extra)"),
}


def pytest_report_header(config):
    return (f"fastsoftmax {fastsoftmax.__version__} from "
            f"{os.path.dirname(fastsoftmax.__file__)}: isa {fastsoftmax.isa()}, available "
            f"{ISAS}, test hooks {'built' if HAVE_HOOKS else 'NOT built'}")


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected
def pytest_collection_modifyitems(config, items):
    for marker, (have, what) in _NEEDS.items():
        need = [i for i in items if i.get_closest_marker(marker)]
        if need and not have:
            raise pytest.UsageError(
                f"{len(need)} selected tests (e.g. {need[0].nodeid}) need {what}; "
                f"or deselect them with -m 'not {marker}'")

# Bounded so the whole suite stays fast; the isa fixture is set once per test, not per
# example, which is what the function-scoped-fixture health check warns about.
settings.register_profile(
    "fastsoftmax",
    max_examples=int(os.environ.get("FASTSOFTMAX_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    # the explain phase imports modules that warn on import (warnings are errors here)
    phases=[p for p in Phase if p is not Phase.explain],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("fastsoftmax")

# Hypothesis imports its patch writer (libcst) only when a test fails; in some environments
# that import emits a DeprecationWarning, which "filterwarnings = error" would turn into an
# INTERNALERROR hiding the real failure.  Import it once now, with that warning ignored.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin skips patches itself
        pass


@pytest.fixture(params=ISAS)
def isa(request):
    """Switch the active kernels to one available ISA for the test, then restore."""
    prev = fastsoftmax.isa()
    fastsoftmax._set_isa(request.param)
    try:
        assert fastsoftmax.isa() == request.param
        yield request.param
    finally:
        fastsoftmax._set_isa(prev)


@pytest.fixture(params=FUNC_NAMES)
def func_name(request):
    return request.param


@pytest.fixture
def rng(request):
    # a stable seed per test id, so a failure reproduces
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
