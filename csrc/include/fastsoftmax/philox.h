// NumPy's Philox4x64-10 (numpy.random.Philox), so that a seeded draw here is, bit for
// bit, the one `np.random.Generator(np.random.Philox(key=seed, counter=c)).random()`
// gives: users and tests reproduce every draw with NumPy alone (docs/contract.md §12).
#pragma once

#include <cstdint>

namespace fastsoftmax {

namespace philox_detail {
inline void mulhilo(uint64_t a, uint64_t b, uint64_t& hi, uint64_t& lo) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  hi = uint64_t(p >> 64);
  lo = uint64_t(p);
}
}  // namespace philox_detail

// The 4 words of Philox4x64-10 for counter c and key k (Salmon et al., Random123).
inline void philox4x64_10(const uint64_t c_in[4], const uint64_t k_in[2], uint64_t out[4]) {
  uint64_t c[4] = {c_in[0], c_in[1], c_in[2], c_in[3]}, k[2] = {k_in[0], k_in[1]};
  for (int round = 0; round < 10; ++round) {
    uint64_t hi0, lo0, hi1, lo1;
    philox_detail::mulhilo(0xD2E7470EE14C6C93ull, c[0], hi0, lo0);
    philox_detail::mulhilo(0xCA5A826395121157ull, c[2], hi1, lo1);
    const uint64_t n0 = hi1 ^ c[1] ^ k[0], n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
    k[0] += 0x9E3779B97F4A7C15ull;
    k[1] += 0xBB67AE8584CAA73Bull;
  }
  for (int i = 0; i < 4; ++i) out[i] = c[i];
}

// The first double in [0, 1) of a fresh Generator(Philox(key=seed, counter=counter)):
// NumPy increments the counter (with carry) before the first block, and maps the first
// word to (w >> 11) * 2^-53.
inline double philox_uniform(uint64_t seed, const uint64_t counter[4]) {
  uint64_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
  for (int i = 0; i < 4 && ++c[i] == 0; ++i) {
  }
  const uint64_t key[2] = {seed, 0};
  uint64_t out[4];
  philox4x64_10(c, key, out);
  return double(out[0] >> 11) * 0x1.0p-53;
}

}  // namespace fastsoftmax
