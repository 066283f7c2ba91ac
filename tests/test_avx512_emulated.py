"""The AVX-512 kernels on a CPU without AVX-512: the ISA-parametrized tests, emulated.

CI and most machines here lack AVX-512, and the isa fixture only offers the ISAs the
CPU has, so without this the AVX-512 kernels would ship untested.  Each test below
runs one test module's ``avx512`` cases in a subprocess where every kernel call runs
on Bochs' CPU model (avx512_emulation_plugin.py, avx512_emulator.py): the same
assertions, against the same float64/long-double references, at one thread
(threads cannot be emulated; the 2-thread cases then run at 1).  Emulation runs
~3M elements/s, so test_exp.py's sweeps take every 100th input there
(FASTSOFTMAX_TEST_SPARSE); every other test runs as it is.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastsoftmax

TESTS = Path(__file__).resolve().parent
MODULES = sorted(
    p.name for p in TESTS.glob("test_*.py")
    # modules without kernel cases per ISA: this one, the qemu NEON run, the reference
    # helpers' own tests and the memory tests (subprocesses, which run natively)
    if p.name not in {Path(__file__).name, "test_neon_qemu.py", "test_reference_helpers.py",
                      "test_memory.py"}
)


def emulation_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_BIND_NOW="1",  # see avx512_emulator.py
        PYTHONMALLOC="malloc",
        OMP_NUM_THREADS="1",
        FASTSOFTMAX_TEST_SPARSE="100",
        PYTHONPATH=os.pathsep.join([str(TESTS)] + [p for p in [env.get("PYTHONPATH")] if p]),
    )
    env.pop("FASTSOFTMAX_ISA", None)
    return env


def _unavailable() -> str | None:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return "the AVX-512 emulator (bochscpu) runs on x86-64 Linux only"
    if "avx512" in fastsoftmax.available_isas():
        return "this CPU runs the AVX-512 kernels natively: every ISA-parametrized test covers them"
    return None


# a module whose tests need the test hooks (or ml_dtypes) passes the `hooks` (`bfloat16`)
# marker on to its run here
PARAMS = [pytest.param(m, marks=[getattr(pytest.mark, k) for k in ("hooks", "bfloat16")
                                 if f"pytest.mark.{k}" in (TESTS / m).read_text()])
          for m in MODULES]


@pytest.mark.slow  # about ten minutes in all
@pytest.mark.emulator
@pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))
@pytest.mark.parametrize("module", PARAMS)
def test_avx512_kernels_emulated(module, request):
    cmd = [sys.executable, "-m", "pytest", "-p", "avx512_emulation_plugin", "-p", "no:cacheprovider",
           "-q", "-k", "avx512", str(TESTS / module)]
    r = subprocess.run(cmd, cwd=request.config.rootpath, env=emulation_environment(),
                       capture_output=True, text=True, timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{out[-20000:]}"
    calls = re.search(r"emulator: (\d+) kernel calls", out)
    assert " passed" in out and calls and int(calls[1]) > 0, out[-5000:]
