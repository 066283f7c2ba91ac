"""pytest plugin: every fastsoftmax kernel call runs on an emulated AVX-512 CPU.

Loaded with ``-p avx512_emulation_plugin`` (tests/ on sys.path) by
tests/test_avx512_emulated.py, in a subprocess whose environment
``emulation_environment()`` sets.  It imports fastsoftmax *on the emulated CPU*
(so its kernel tables see AVX-512 and ``available_isas()`` lists ``avx512``), then
wraps every entry point of ``fastsoftmax._core`` and of the test hooks
``fastsoftmax._testing`` (when built; also imported on the emulated CPU) so that the call runs on the emulator, at one thread: pytest, the references and the
assertions run natively.  See avx512_emulator.py for how and why.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading

import numpy  # noqa: F401  (imported natively: the guest should import fastsoftmax only)
import pytest

import avx512_emulator

# Native-only entry points: they run no kernel (and _set_isa must stay callable).
_NATIVE = {"isa", "available_isas", "get_num_threads", "_set_num_threads",
           "_restore_num_threads", "_set_isa", "_set_fallbacks", "_overlap"}

avx512_emulator.prepare_process()
EMULATOR = avx512_emulator.Emulator()
_in_guest = False


def _emulated(fn, core):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        global _in_guest
        if _in_guest:  # a Python fallback called back into _core: already on the guest
            return fn(*args, **kwargs)
        if threading.current_thread() is not threading.main_thread():
            # the guest runs with the main thread's TLS, and one guest at a time
            raise RuntimeError("only the main thread can call kernels on the emulator")
        prev = core._set_num_threads(1)  # threads cannot be emulated
        _in_guest = True
        try:
            return EMULATOR.call(lambda: fn(*args, **kwargs))
        finally:
            _in_guest = False
            core._restore_num_threads(prev)

    return call


def _install():
    fs = EMULATOR.call(lambda: importlib.import_module("fastsoftmax"))
    core = fs._core
    if "avx512" not in fs.available_isas():
        raise RuntimeError(f"the emulated CPU offers {fs.available_isas()}, not avx512")
    modules = [core]
    try:
        modules.append(EMULATOR.call(lambda: importlib.import_module("fastsoftmax._testing")))
    except ModuleNotFoundError as e:  # an install without the hooks: their tests are
        if e.name != "fastsoftmax._testing":  # deselected (conftest.py, marker `hooks`)
            raise
    for module in modules:
        for name in dir(module):
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type) and not name.startswith("__") \
                    and name not in _NATIVE:
                setattr(module, name, _emulated(obj, core))
    # names bound at import time to the C functions
    for name in ("softmax", "log_softmax", "logsumexp"):
        setattr(fs, name, getattr(core, name))


_install()


# Tests that need what emulation cannot give: kernels on two Python threads at once,
# or in a subprocess (which runs natively).
_NOT_EMULATED = {"test_gil_released_two_python_threads", "test_env_forces_isa"}


def pytest_collection_modifyitems(config, items):
    keep = [i for i in items if i.originalname not in _NOT_EMULATED]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_report_header(config):
    return (f"fastsoftmax kernels run on an emulated AVX-512 CPU (bochscpu); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


def pytest_terminal_summary(terminalreporter):
    st = EMULATOR.stats
    terminalreporter.write_line(f"emulator: {st['calls']} kernel calls, {st['syscalls']} system "
                                f"calls forwarded, {st['page_faults']} page faults")


_exit_status = 0


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # bochscpu's teardown at interpreter exit crashes (and nanobind reports its objects
    # as leaked): leave with pytest's status once pytest is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
