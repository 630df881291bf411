// The PTX instructions of ops/cuda/flash_attention_ptx.cuh emulated for cuda_emulation.h,
// following the PTX ISA's fragment layouts: mma.sync m16n8k16, ldmatrix (x4, .trans), cp.async
// with commit and wait groups (landing at once, or as late as the wait allows: the two ends of
// what the hardware may do), and bf16/f16 pair packing.
#pragma once

// The instructions of ops/cuda/flash_attention_ptx.cuh.
namespace qkv::ops::cuda {

template <class T>
uint32_t pack2(float lo, float hi) {
  using cuda_emulation::from_float;
  return from_float<T>(lo) | uint32_t(from_float<T>(hi)) << 16;
}
template <class T>
float2 unpack2(uint32_t bits) {
  using cuda_emulation::to_float;
  return {to_float<T>(bits & 0xffffu), to_float<T>(bits >> 16)};
}

// c += a b for a warp: rebuilds A [16, 16], B [16, 8] and C [16, 8] from the lanes' fragments.
template <class T>
void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  cuda_emulation::Warp& w = cuda_emulation::warp();
  const int lane = cuda_emulation::lane();
  std::copy(a, a + 4, w.a[lane]);
  std::copy(c, c + 4, w.c[lane]);
  w.b[lane][0] = b0, w.b[lane][1] = b1;
  cuda_emulation::collective([](cuda_emulation::Warp& w) {
    auto lo = [](uint32_t x) { return cuda_emulation::to_float<T>(x & 0xffffu); };
    auto hi = [](uint32_t x) { return cuda_emulation::to_float<T>(x >> 16); };
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int half = 0; half < 2; ++half) {  // a0/a1 (cols 2t), a2/a3 (cols 2t + 8)
        A[g][2 * t + 8 * half] = lo(w.a[l][2 * half]);
        A[g][2 * t + 8 * half + 1] = hi(w.a[l][2 * half]);
        A[g + 8][2 * t + 8 * half] = lo(w.a[l][2 * half + 1]);
        A[g + 8][2 * t + 8 * half + 1] = hi(w.a[l][2 * half + 1]);
        B[2 * t + 8 * half][g] = lo(w.b[l][half]);
        B[2 * t + 8 * half + 1][g] = hi(w.b[l][half]);
      }
      C[g][2 * t] = w.c[l][0], C[g][2 * t + 1] = w.c[l][1];
      C[g + 8][2 * t] = w.c[l][2], C[g + 8][2 * t + 1] = w.c[l][3];
    }
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 16; ++k) C[i][j] += A[i][k] * B[k][j];
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      w.d[l][0] = C[g][2 * t], w.d[l][1] = C[g][2 * t + 1];
      w.d[l][2] = C[g + 8][2 * t], w.d[l][3] = C[g + 8][2 * t + 1];
    }
  });
  std::copy(w.d[lane], w.d[lane] + 4, c);
}

// Lanes 8i..8i+7 address the rows of matrix i; lane l gets from each matrix (row l/4, cols
// 2(l%4), +1), or with trans (rows 2(l%4), +1, col l/4).
inline void ldmatrix(uint32_t (&r)[4], const void* row, bool trans) {
  cuda_emulation::check_aligned(row, 16, "an ldmatrix row");
  cuda_emulation::Warp& w = cuda_emulation::warp();
  const int lane = cuda_emulation::lane();
  w.row[lane] = static_cast<const uint16_t*>(row);
  auto gather = [trans](cuda_emulation::Warp& w) {
    for (int l = 0; l < 32; ++l) {
      const int g = l / 4, t = l % 4;
      for (int i = 0; i < 4; ++i)
        w.r[l][i] = trans ? w.row[8 * i + 2 * t][g] | uint32_t(w.row[8 * i + 2 * t + 1][g]) << 16
                          : w.row[8 * i + g][2 * t] | uint32_t(w.row[8 * i + g][2 * t + 1]) << 16;
    }
  };
  cuda_emulation::collective(gather);
  std::copy(w.r[lane], w.r[lane] + 4, r);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  ldmatrix(r, row, false);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  ldmatrix(r, row, true);
}
inline void cp_async(void* smem, const void* gmem, int bytes, bool valid) {
  cuda_emulation::check_aligned(smem, bytes, "a cp.async destination");
  if (valid) cuda_emulation::check_aligned(gmem, bytes, "a cp.async source");
  const cuda_emulation::Copy copy{smem, gmem, bytes, valid};
  if (cuda_emulation::state.late_copies)
    cuda_emulation::state.fibers[cuda_emulation::state.current].groups.back().push_back(copy);
  else
    copy.run();
}
inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  cp_async(smem, gmem, 16, valid);
}
inline void cp_async_4(void* smem, const void* gmem, bool valid) {
  cp_async(smem, gmem, 4, valid);
}
inline void cp_async_commit() {
  cuda_emulation::state.fibers[cuda_emulation::state.current].groups.emplace_back();
}
// Lands every committed group but the `pending` newest.
template <int pending>
void cp_async_wait() {
  auto& groups = cuda_emulation::state.fibers[cuda_emulation::state.current].groups;
  const int committed = int(groups.size()) - 1;
  for (int i = 0; i < committed - pending; ++i) {
    for (const auto& copy : groups[i]) copy.run();
    groups[i].clear();
  }
}
inline float exp2_approx(float x) {
  return std::exp2(x);
}

}  // namespace qkv::ops::cuda
