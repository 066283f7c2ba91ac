// CPU detection and the kernel table: chosen once (first use), overridable with
// FASTSOFTMAX_ISA=scalar|avx2|avx512|neon. Asking for an ISA this build or CPU
// cannot run is an error, never a silent fallback.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "fastsoftmax/kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define FASTSOFTMAX_X86 1
#endif

namespace fastsoftmax {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

Isa parse_isa(const char* name) {
  for (int i = 0; i < kNumIsas; ++i)
    if (std::strcmp(name, isa_name(Isa(i))) == 0) return Isa(i);
  throw std::invalid_argument(std::string("unknown ISA '") + name +
                              "': expected one of scalar, avx2, avx512, neon");
}

namespace {

#ifdef FASTSOFTMAX_X86
// XCR0 tells which register states the OS saves on context switches; a CPU with
// AVX-512 under an OS that does not enable ZMM state must not use it.
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

struct X86Features {
  bool avx2 = false;    // AVX2 + FMA + F16C, YMM state enabled
  bool avx512 = false;  // F/BW/DQ/VL (+ the above), ZMM and opmask state enabled
};

X86Features detect_x86() {
  X86Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;     // SSE + AVX
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  f.avx2 = ymm_state && avx2 && fma && f16c && bmi2;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}
#endif

bool hardware_has(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#ifdef FASTSOFTMAX_X86
    case Isa::avx2: return detect_x86().avx2;
    case Isa::avx512: return detect_x86().avx512;
#endif
#if defined(__aarch64__)
    case Isa::neon: return true;  // Advanced SIMD is mandatory on aarch64
#endif
    default: return false;
  }
}

bool (*const kFill[kNumIsas])(KernelTable&) = {fill_scalar, fill_avx2, fill_avx512, fill_neon};

struct Tables {
  KernelTable table[kNumIsas];
  bool ok[kNumIsas] = {};
  Tables() {
    for (int i = 0; i < kNumIsas; ++i) ok[i] = hardware_has(Isa(i)) && kFill[i](table[i]);
  }
};

const Tables& tables() {
  static const Tables t;  // thread-safe initialization (C++11 magic statics)
  return t;
}

std::atomic<const KernelTable*> g_active{nullptr};
std::mutex g_choose_mutex;

const KernelTable* choose_default() {
  const Tables& t = tables();
  if (const char* env = std::getenv("FASTSOFTMAX_ISA"); env && *env) {
    Isa want;
    try {
      want = parse_isa(env);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("FASTSOFTMAX_ISA: ") + e.what());
    }
    if (!t.ok[int(want)])
      throw std::invalid_argument(std::string("FASTSOFTMAX_ISA=") + env +
                                  ": this CPU or build does not support that ISA");
    return &t.table[int(want)];
  }
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon})
    if (t.ok[int(isa)]) return &t.table[int(isa)];
  return &t.table[int(Isa::scalar)];
}

}  // namespace

bool cpu_supports(Isa isa) { return tables().ok[int(isa)]; }

// AVX512_BF16 (CPUID leaf 7 subleaf 1, EAX bit 5): fill_avx512 takes its conversions
// for the bfloat16 kernels (same bits as its integer ones; kernels/avx512.cpp).
bool cpu_has_avx512_bf16() {
#ifdef FASTSOFTMAX_X86
  if (!detect_x86().avx512 || __get_cpuid_max(0, nullptr) < 7) return false;
  unsigned a, b, c, d;
  __cpuid_count(7, 1, a, b, c, d);
  return a & (1u << 5);
#else
  return false;
#endif
}

const KernelTable& kernels() {
  const KernelTable* k = g_active.load(std::memory_order_acquire);
  if (k) return *k;
  std::lock_guard<std::mutex> lock(g_choose_mutex);
  k = g_active.load(std::memory_order_relaxed);
  if (!k) {
    k = choose_default();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

const KernelTable& kernels_for(Isa isa) {
  if (!cpu_supports(isa))
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not supported by this CPU or build");
  return tables().table[int(isa)];
}

void set_active_isa(Isa isa) { g_active.store(&kernels_for(isa), std::memory_order_release); }

}  // namespace fastsoftmax
