"""The NEON kernels, cross-compiled for aarch64 and run under qemu-aarch64.

tests/neon/neon_test.cpp (plain C++, no Python) tests every SIMD kernel table compiled
in against the scalar kernels and an extended-precision reference: row lengths around
the vector widths and the block size, special values at every position, blocked rows
through reduce + finish, panels, determinism, and a sweep of the vector exp. Here it is
built with ``aarch64-linux-gnu-g++ -O2 -static`` together with csrc/kernels/*.cpp and
csrc/dispatch.cpp, and run under ``qemu-aarch64``; it exits non-zero on any failure.

Needs the Debian packages g++-aarch64-linux-gnu and qemu-user (installed by .ci/run);
without them the test is skipped with the reason. On an aarch64 machine the native
compiler is used and the binary runs directly.
"""

import os
import pathlib
import platform
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.source  # compiles csrc/: not in an installed wheel's test run
SOURCES = [ROOT / "tests" / "neon" / "neon_test.cpp", ROOT / "csrc" / "dispatch.cpp",
           *sorted((ROOT / "csrc" / "kernels").glob("*.cpp"))]


def _toolchain():
    if platform.machine() in ("aarch64", "arm64"):
        cxx = shutil.which("g++") or shutil.which("c++")
        return (cxx, []) if cxx else (None, "no C++ compiler on PATH")
    cxx = shutil.which("aarch64-linux-gnu-g++")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    missing = [name for name, path in (("aarch64-linux-gnu-g++ (Debian: g++-aarch64-linux-gnu)",
                                        cxx), ("qemu-aarch64 (Debian: qemu-user)", qemu))
               if path is None]
    if missing:
        return None, "not on PATH: " + ", ".join(missing)
    return cxx, [qemu]


@pytest.fixture(scope="module")
def neon_binary(tmp_path_factory):
    cxx, runner = _toolchain()
    if cxx is None:
        pytest.skip(f"NEON cross test needs an aarch64 toolchain and qemu: {runner}")
    out = tmp_path_factory.mktemp("neon") / "neon_test"
    cmd = [cxx, "-std=c++17", "-O2", "-static", "-Wall", "-Wextra", "-Werror",
           "-I", str(ROOT / "csrc" / "include"), "-I", str(ROOT / "csrc"),
           *map(str, SOURCES), "-o", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, f"cross build failed:\n{' '.join(cmd)}\n{p.stderr[-4000:]}"
    return runner + [str(out)]


def test_neon_kernels_under_qemu(neon_binary):
    args = list(neon_binary)
    if os.environ.get("FASTSOFTMAX_NEON_FULL") != "1":
        args.append("--quick")  # fewer lengths/positions: emulation is ~50x slower
    p = subprocess.run(args, capture_output=True, text=True, timeout=1200, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"neon_test failed (exit {p.returncode}):\n{out[-6000:]}"
    assert "neon kernels: 0 failures" in out, out[-3000:]
    assert "max 1 ULP" in out, out[-3000:]
