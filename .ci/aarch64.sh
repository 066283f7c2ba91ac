#!/usr/bin/env bash
# The whole package on an emulated aarch64 CPU: the extension cross-built for aarch64,
# imported by an aarch64 CPython under qemu-aarch64, and the test suite's `aarch64`
# subset run there with aarch64 NumPy and SciPy: the same tests, the same references.
#
# Steps (everything fetched is cached under build/aarch64/, git-ignored; a rerun only
# rebuilds the extension and runs the tests):
#   1. Debian's arm64 CPython 3.11 (python3.11-minimal, libpython3.11-stdlib, the
#      headers of libpython3.11-dev) and its libraries (libc6, libstdc++6, libgomp1, ...),
#      fetched with `apt-get download` through a private apt state (build/aarch64/apt:
#      the system's sources, architecture arm64; nothing is installed or reconfigured)
#      and unpacked with `dpkg -x` into one sysroot, build/aarch64/root.
#   2. The wheels of .ci/aarch64-requirements.txt for cp311 manylinux aarch64 (NumPy,
#      SciPy) or pure Python (pytest, hypothesis, threadpoolctl, pybind11, ...), fetched
#      with `pip download` and unzipped into build/aarch64/site.
#   3. The extension built by the project's CMakeLists.txt with aarch64-linux-gnu-g++
#      (-O3, OpenMP from the cross gcc's libgomp, pybind11's headers, the arm64 Python
#      headers), as _core.cpython-311-aarch64-linux-gnu.so, next to a copy of
#      python/fastsoftmax in build/aarch64/pkg.
#   4. `python -m pytest -m "aarch64 and not slow"` under qemu-aarch64, twice:
#      isa() == "neon" (the default; the isa fixture limited to neon by
#      FASTSOFTMAX_TEST_ISAS) and FASTSOFTMAX_ISA=scalar (fixture limited to scalar), so
#      each test runs once per aarch64 ISA. sys.executable is a wrapper that runs the
#      aarch64 Python under qemu, so the tests' subprocesses run emulated as well.
#
# Why a subset: the whole suite (not slow) runs well over an hour under qemu on the
# 2-core development machine (four of its twenty test modules took 15 minutes,
# test_exp.py's full sweeps over 18 minutes for one test), too much beside the native
# run in CI's 90 minutes. The subset takes 6-11 minutes a run here, 15-22 in all. The
# tests marked `aarch64` (README, "aarch64, end to end") cover every public function, the three
# layout families (rows, panels, gather), every dtype, threads 1 and 2, the ISA
# choice and its environment variable, the subprocess tests; every test runs natively
# in the ordinary suite. FASTSOFTMAX_AARCH64_FULL=1 runs the whole suite (not slow)
# here instead; FASTSOFTMAX_AARCH64_PYTEST_ARGS adds pytest arguments (say, -x or -k).
#
# Needs aarch64-linux-gnu-g++ (Debian g++-aarch64-linux-gnu), qemu-aarch64 (qemu-user),
# apt-get and dpkg, cmake, a host Python with pip, and Debian's and PyPI's registries on
# the first run. Without one of those it prints "aarch64 end to end: SKIPPED: <why>" and
# exits 0; when the tools are there, a build or test failure exits 1. On an aarch64
# host the ordinary test suite already is this run: skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
A=${FASTSOFTMAX_AARCH64_DIR:-$ROOT/build/aarch64}
HOST_PY=${PYTHON:-python3}
command -v "$HOST_PY" >/dev/null 2>&1 || HOST_PY=python
START=$(date +%s)

skip() {
  echo "aarch64 end to end: SKIPPED: $*"
  exit 0
}
say() { echo "aarch64: $*"; }

# ---------------------------------------------------------------------------- tools
case "$(uname -m)" in
  x86_64 | amd64) ;;
  aarch64 | arm64) skip "this machine is aarch64: the ordinary test suite runs natively here" ;;
  *) skip "cross build from $(uname -m) is not set up (x86-64 hosts only)" ;;
esac
CXX=$(command -v aarch64-linux-gnu-g++ || true)
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
missing=()
[[ -n $CXX ]] || missing+=("aarch64-linux-gnu-g++ (Debian: g++-aarch64-linux-gnu)")
[[ -n $QEMU ]] || missing+=("qemu-aarch64 (Debian: qemu-user)")
for t in apt-get dpkg cmake; do command -v $t >/dev/null 2>&1 || missing+=("$t"); done
"$HOST_PY" -m pip --version >/dev/null 2>&1 || missing+=("pip for $HOST_PY")
((${#missing[@]} == 0)) || skip "not available: $(printf '%s; ' "${missing[@]}")"

mkdir -p "$A"
R=$A/root          # the arm64 sysroot: Python, its libraries, the Python headers
SITE=$A/site       # the unzipped wheels
PY=$R/usr/bin/python3.11-qemu

# ----------------------------------------------------- 1. Debian's arm64 Python 3.11
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev
      libc6 libgcc-s1 libstdc++6 libgomp1 zlib1g libexpat1 libssl3 libbz2-1.0 libcrypt1
      libdb5.3 libffi8 liblzma5 libncursesw6 libtinfo6 libreadline8 libsqlite3-0 libuuid1
      libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0
      libcom-err2 libkeyutils1)
root_key="debs: ${DEBS[*]}"
if [[ ! -x $R/usr/bin/python3.11 || "$(cat "$A/root.stamp" 2>/dev/null)" != "$root_key" ]]; then
  say "fetching Debian's arm64 Python 3.11 (${#DEBS[@]} packages)"
  mkdir -p "$A/apt/lists/partial" "$A/apt/cache/archives/partial" "$A/apt/prefs"
  : >"$A/apt/status"
  cat >"$A/apt/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Sandbox::User "root";
Dir::State::Lists "$A/apt/lists";
Dir::State::status "$A/apt/status";
Dir::Cache "$A/apt/cache";
Dir::Etc::preferencesparts "$A/apt/prefs";
Acquire::Languages "none";
EOF
  export APT_CONFIG=$A/apt/apt.conf
  apt-get -qq update >"$A/apt.log" 2>&1 || { tail -5 "$A/apt.log"; skip "apt-get update (arm64 lists) failed"; }
  rm -rf "$A/debs" && mkdir -p "$A/debs"
  (cd "$A/debs" && apt-get -qq download "${DEBS[@]}") >>"$A/apt.log" 2>&1 ||
    { tail -5 "$A/apt.log"; skip "apt-get download of the arm64 packages failed"; }
  unset APT_CONFIG
  rm -rf "$R" && mkdir -p "$R"
  for d in "$A"/debs/*.deb; do dpkg -x "$d" "$R"; done
  echo "$root_key" >"$A/root.stamp"
fi
# sys.executable: the aarch64 Python under qemu (binfmt_misc need not be registered),
# so that subprocess.run([sys.executable, ...]) runs emulated too.
cat >"$PY" <<EOF
#!/bin/sh
# aarch64 CPython under qemu-aarch64 (written by .ci/aarch64.sh)
R="\$(cd "\$(dirname "\$0")/../.." && pwd)"
exec "$QEMU" -L "\$R" -0 "\$0" "\$R/usr/bin/python3.11" "\$@"
EOF
chmod +x "$PY"

# ------------------------------------------------------------ 2. the aarch64 wheels
REQS=$ROOT/.ci/aarch64-requirements.txt
site_key="$(sha256sum <"$REQS")"
if [[ ! -d $SITE/numpy || "$(cat "$A/site.stamp" 2>/dev/null)" != "$site_key" ]]; then
  say "fetching the aarch64 wheels of $(basename "$REQS")"
  rm -rf "$A/wheels" && mkdir -p "$A/wheels"
  "$HOST_PY" -m pip download -q --disable-pip-version-check --dest "$A/wheels" \
      --only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
      --python-version 3.11 --implementation cp -r "$REQS" >"$A/pip.log" 2>&1 ||
    { tail -5 "$A/pip.log"; skip "pip download of the aarch64 wheels failed"; }
  rm -rf "$SITE" && mkdir -p "$SITE"
  for w in "$A"/wheels/*.whl; do "$HOST_PY" -m zipfile -e "$w" "$SITE"; done
  echo "$site_key" >"$A/site.stamp"
fi

# -------------------------------------------------------- 3. the cross-built extension
EXT=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
[[ $EXT == .cpython-311-aarch64-linux-gnu.so ]] || { echo "unexpected EXT_SUFFIX $EXT" >&2; exit 1; }
cat >"$A/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER "$CXX")
EOF
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
[[ -f $A/cmake/CMakeCache.txt ]] || {
  say "configuring the cross build"
  # Python_EXECUTABLE: FindPython asks the aarch64 interpreter (under qemu) for its
  # version; the headers are the arm64 sysroot's (Debian's pyconfig.h includes
  # <aarch64-linux-gnu/python3.11/pyconfig.h>, hence -idirafter the sysroot's include).
  cmake -S "$ROOT" -B "$A/cmake" "${GEN[@]}" -DCMAKE_TOOLCHAIN_FILE="$A/toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-idirafter $R/usr/include" \
    -DPython_EXECUTABLE="$PY" -DPython_INCLUDE_DIR="$R/usr/include/python3.11" \
    -DPYTHON_MODULE_EXTENSION="$EXT" -Dpybind11_DIR="$SITE/pybind11/share/cmake/pybind11" \
    -DFASTSOFTMAX_TEST_HOOKS=ON >"$A/configure.log" 2>&1 || { tail -40 "$A/configure.log"; rm -rf "$A/cmake"; exit 1; }
}
say "building _core$EXT with $("$CXX" -dumpfullversion) (aarch64-linux-gnu)"
cmake --build "$A/cmake" -j2 >"$A/build.log" 2>&1 || { tail -60 "$A/build.log"; exit 1; }
rm -rf "$A/pkg" && mkdir -p "$A/pkg"
cp -r "$ROOT/python/fastsoftmax" "$A/pkg/"
cp "$A/cmake/_core$EXT" "$A/cmake/_testing$EXT" "$A/pkg/fastsoftmax/"

export PYTHONPATH=$A/pkg:$SITE
unset FASTSOFTMAX_ISA FASTSOFTMAX_TEST_ISAS
# test_exp.py's sweeps take every 100th input on an emulated CPU, as under the AVX-512
# emulation (tests/test_avx512_emulated.py): the same assertions
export FASTSOFTMAX_TEST_SPARSE=${FASTSOFTMAX_TEST_SPARSE:-100}
"$PY" - <<'EOF'
import os, platform
import numpy, scipy, fastsoftmax
assert platform.machine() == "aarch64", platform.machine()
assert fastsoftmax.__file__.startswith(os.environ["PYTHONPATH"].split(":")[0]), fastsoftmax.__file__
assert fastsoftmax.isa() == "neon", fastsoftmax.isa()
assert fastsoftmax.available_isas() == ["neon", "scalar"], fastsoftmax.available_isas()
print(f"aarch64: CPython {platform.python_version()} on {platform.machine()} (qemu-aarch64), "
      f"NumPy {numpy.__version__}, SciPy {scipy.__version__}: fastsoftmax.isa() == "
      f"{fastsoftmax.isa()!r}, available {fastsoftmax.available_isas()}, "
      f"{fastsoftmax.get_num_threads()} threads")
EOF

# --------------------------------------------------------------------- 4. the tests
if [[ ${FASTSOFTMAX_AARCH64_FULL:-0} == 1 ]]; then SELECT="not slow"; else SELECT="aarch64 and not slow"; fi
read -r -a EXTRA <<<"${FASTSOFTMAX_AARCH64_PYTEST_ARGS:-}"
summary=()
total_passed=0
total_failed=0
status=0
count() {  # the sum of the "N <word>" counts of pytest's closing line, for the words given
  local n=0 w
  for w in "$@"; do
    n=$((n + $(grep -oE "[0-9]+ $w\b" <<<"$last" | grep -oE '^[0-9]+' || echo 0)))
  done
  echo $n
}
run_tests() {  # name, label, env assignments...
  local log=$A/pytest-$1.log label=$2 t0=$SECONDS rc=0 last passed failed
  shift 2
  say "pytest -m \"$SELECT\" with $label"
  env "$@" "$PY" -m pytest -p no:cacheprovider -q -m "$SELECT" "${EXTRA[@]}" 2>&1 |
    tee "$log" || rc=$?
  last=$(tail -n 1 "$log")
  passed=$(count passed)
  failed=$(count failed errors error)
  ((rc == 0)) || { status=1; ((failed > 0)) || failed=1; }
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  summary+=("  $label: $passed passed, $failed failed, $((SECONDS - t0)) s")
}
run_tests neon 'isa() == "neon"' FASTSOFTMAX_TEST_ISAS=neon
run_tests scalar "FASTSOFTMAX_ISA=scalar" FASTSOFTMAX_ISA=scalar FASTSOFTMAX_TEST_ISAS=scalar

echo
echo "aarch64 end to end (cross-built extension, CPython 3.11 under qemu-aarch64), tests -m \"$SELECT\", $(( $(date +%s) - START )) s in all:"
printf '%s\n' "${summary[@]}"
if ((status == 0)); then
  echo "aarch64: the tests passed on aarch64 with isa() == \"neon\" and with the scalar kernels"
else
  echo "aarch64: FAILED (logs: $A/pytest-*.log)"
fi
echo "aarch64: $total_passed passed, $total_failed failed"
exit $status
