// Releases the GIL for a computation, like pybind11's gil_scoped_release, except at
// interpreter exit. CPython ends a daemon thread that wants the GIL back while the
// interpreter finalizes (pthread_exit: a forced unwind); through pybind11's noexcept
// destructor that is std::terminate, and the process aborted. Here a thread that
// comes back after finalization began is parked (the process exits around it, as
// CPython 3.14 does itself), and one already waiting for the GIL when it begins is
// unwound through this destructor, which lets the unwind pass (noexcept(false); the
// bindings catch only std::exception types, so it reaches CPython's frames).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>

namespace fastsoftmax {

class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ~ReleaseGil() noexcept(false) {
    if (finalizing())
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    PyEval_RestoreThread(state_);
  }
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

 private:
  static bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
  }
  PyThreadState* state_;
};

}  // namespace fastsoftmax
