// Releases the GIL for a computation, like pybind11's gil_scoped_release, except at
// interpreter exit: a daemon thread that comes back while the interpreter finalizes
// would be ended by CPython (pthread_exit: a forced unwind through the noexcept
// destructor, std::terminate, the process aborts); this one parks the thread instead,
// and the process exits around it (what CPython 3.14 does itself).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>

namespace fastsoftmax {

class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ~ReleaseGil() {
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
