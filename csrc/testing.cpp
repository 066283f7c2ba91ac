// Test hooks exposed as fastsoftmax._core._testing: direct access to per-ISA
// helpers (e.g. the vector exp) for exhaustive accuracy tests. Not public API.
#include <pybind11/pybind11.h>

namespace fastsoftmax {
void register_testing(pybind11::module_& m) { (void)m; }
}  // namespace fastsoftmax
