// FlashAttention-2 forward on the tensor cores (mma.sync m16n8k16, bf16/f16 in, f32 sums).
// One block per (query tile of 64 rows, batch * head); each of its 4 warps owns 16 query rows
// and keeps them in registers (A fragments). K and V stream through shared memory in tiles of
// 64 keys, two stages deep (cp.async: the next tile loads while this one is computed; 36 KiB for
// D 64, 68 KiB for D 128, so 3 blocks share a multiprocessor). Per tile a warp computes its scores
// S = Q K^T [16, 64] in registers, folds them into a running row max m and sum l (online softmax,
// in base 2 with log2(e) folded into the scale), rescales its output accumulator O [16, D] and adds
// P V. Scores never reach global memory; the row log-sum-exp is written for the backward pass.
#pragma once
#include "ops/cuda/flash_attention_device.cuh"

namespace qkv::ops::cuda::flash_fwd {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kQueryTile = 16 * kWarps;  // query rows per block
constexpr int kKeyTile = 64;             // keys per streamed tile

static_assert(kQueryTile == kKeyTile, "the Q tile borrows the second K stage");
template <int D>
constexpr int kForwardSmemBytes = 4 * kKeyTile* kRowStride<D> * 2;  // 2 x (K, V)
// Blocks per multiprocessor, pinned: registers capped at 65536 / (3 * 128) = 170 per thread
// (D 128 uses 168, D 64 146), and on an H100 (228 KiB of shared memory per multiprocessor, 1 KiB of
// it reserved per block) three blocks' tiles fit at both head dimensions.
constexpr int kBlocksPerSm = 3;
static_assert(kBlocksPerSm * (kForwardSmemBytes<128> + 1024) <= 228 * 1024);

template <class T, int D>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    flash_forward_kernel(FlashShape s, const T* q, const T* k, const T* v, T* out, float* lse) {
  constexpr int kStride = kRowStride<D>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_tiles = reinterpret_cast<T*>(smem);        // [2][kKeyTile][kStride]
  T* v_tiles = k_tiles + 2 * kKeyTile * kStride;  // [2][kKeyTile][kStride]
  // Q [kQueryTile][kStride] passes through the second K stage on its way to registers (that
  // stage is first loaded for tile 1), which leaves room for a third block per multiprocessor.
  T* q_tile = k_tiles + kKeyTile * kStride;

  // Longest (causal) query tiles first, so the short ones fill the tail of the launch.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQueryTile;
  const int bh = blockIdx.y, batch = bh / s.heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const KeyMask mask(s, batch);
  const T* q_head = q + int64_t(bh) * s.q_len * D;  // [Lq, D]
  const T* k_head = k + int64_t(bh) * s.k_len * D;  // [Lk, D]
  const T* v_head = v + int64_t(bh) * s.k_len * D;  // [Lk, D]

  // Keys the block needs: its last row sees the most.
  const int key_stop = mask.max_end(q0, kQueryTile);
  const int n_tiles = (key_stop + kKeyTile - 1) / kKeyTile;
  auto load_kv = [&](int tile) {
    int stage = tile % 2;
    load_tile_async<kKeyTile, D, kThreads>(k_tiles + stage * kKeyTile * kStride, k_head,
                                           tile * kKeyTile, s.k_len);
    load_tile_async<kKeyTile, D, kThreads>(v_tiles + stage * kKeyTile * kStride, v_head,
                                           tile * kKeyTile, s.k_len);
  };
  load_tile_async<kQueryTile, D, kThreads>(q_tile, q_head, q0, s.q_len);
  cp_async_commit();
  if (n_tiles > 0) load_kv(0);
  cp_async_commit();
  cp_async_wait<1>();  // Q has landed
  __syncthreads();

  // This warp's rows: w0 + g (the c0, c1 half of a C fragment) and w0 + g + 8 (c2, c3).
  const int w0 = q0 + warp * 16;
  const int end_lo = mask.key_end(w0 + g), end_hi = mask.key_end(w0 + g + 8);
  const int warp_min_end = mask.min_end(w0, 16), warp_max_end = mask.max_end(w0, 16);
  const float scale_log2 = s.scale * kLog2e;

  uint32_t q_frag[D / 16][4];  // A fragments of Q [16, D], one per k-step of 16
  for (int ks = 0; ks < D / 16; ++ks)
    ldmatrix_x4(q_frag[ks], q_tile + (warp * 16 + lane % 16) * kStride + ks * 16 + (lane / 16) * 8);
  __syncthreads();  // every warp holds its Q before tile 1 overwrites it

  float o[D / 8][4] = {};                    // O [16, D], unnormalized
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running row max of the base-2 scores
  float l_lo = 0.f, l_hi = 0.f;              // running row sum (this thread's columns)

  for (int tile = 0; tile < n_tiles; ++tile) {
    if (tile + 1 < n_tiles) load_kv(tile + 1);
    cp_async_commit();
    cp_async_wait<1>();  // this tile has landed
    __syncthreads();
    const int j0 = tile * kKeyTile;
    if (j0 < warp_max_end) {  // else no row of this warp sees a key of the tile
      const T* k_tile = k_tiles + (tile % 2) * kKeyTile * kStride;  // [kKeyTile][kStride]
      const T* v_tile = v_tiles + (tile % 2) * kKeyTile * kStride;

      // S [16, kKeyTile] = Q K^T: n-blocks of 8 keys.
      float sc[kKeyTile / 8][4] = {};
      for (int ks = 0; ks < D / 16; ++ks) {
        for (int nb2 = 0; nb2 < kKeyTile / 16; ++nb2) {
          uint32_t kb[4];
          ldmatrix_x4(kb, k_tile + (nb2 * 16 + (lane / 16) * 8 + lane % 8) * kStride + ks * 16 +
                              ((lane / 8) % 2) * 8);
          mma_16816<T>(sc[2 * nb2], q_frag[ks], kb[0], kb[1]);
          mma_16816<T>(sc[2 * nb2 + 1], q_frag[ks], kb[2], kb[3]);
        }
      }

      // Base-2 scores; -inf where masked (only tiles that reach past some row's last key).
      const bool need_mask = j0 + kKeyTile > warp_min_end;
      float max_lo = m_lo, max_hi = m_hi;
      for (int nb = 0; nb < kKeyTile / 8; ++nb) {
        for (int e = 0; e < 4; ++e) {
          int key = j0 + nb * 8 + 2 * t + (e % 2);
          bool hidden = need_mask && key >= (e < 2 ? end_lo : end_hi);
          sc[nb][e] = hidden ? -INFINITY : sc[nb][e] * scale_log2;
        }
        max_lo = fmaxf(max_lo, fmaxf(sc[nb][0], sc[nb][1]));
        max_hi = fmaxf(max_hi, fmaxf(sc[nb][2], sc[nb][3]));
      }
      // The 4 threads of a group hold one row between them.
      for (int offset = 1; offset < 4; offset *= 2) {
        max_lo = fmaxf(max_lo, __shfl_xor_sync(0xffffffffu, max_lo, offset));
        max_hi = fmaxf(max_hi, __shfl_xor_sync(0xffffffffu, max_hi, offset));
      }
      // A row that has seen no key yet keeps max -inf: subtract 0 then, so exp2 gives 0, not NaN.
      const float base_lo = max_lo == -INFINITY ? 0.f : max_lo;
      const float base_hi = max_hi == -INFINITY ? 0.f : max_hi;
      const float alpha_lo = exp2_approx(m_lo - base_lo), alpha_hi = exp2_approx(m_hi - base_hi);
      m_lo = max_lo, m_hi = max_hi;
      float sum_lo = 0.f, sum_hi = 0.f;
      for (int nb = 0; nb < kKeyTile / 8; ++nb) {
        sc[nb][0] = exp2_approx(sc[nb][0] - base_lo);
        sc[nb][1] = exp2_approx(sc[nb][1] - base_lo);
        sc[nb][2] = exp2_approx(sc[nb][2] - base_hi);
        sc[nb][3] = exp2_approx(sc[nb][3] - base_hi);
        sum_lo += sc[nb][0] + sc[nb][1];
        sum_hi += sc[nb][2] + sc[nb][3];
      }
      l_lo = l_lo * alpha_lo + sum_lo;
      l_hi = l_hi * alpha_hi + sum_hi;
      for (int nd = 0; nd < D / 8; ++nd) {
        o[nd][0] *= alpha_lo, o[nd][1] *= alpha_lo;
        o[nd][2] *= alpha_hi, o[nd][3] *= alpha_hi;
      }

      // O [16, D] += P [16, kKeyTile] V [kKeyTile, D]: P's C fragments are A fragments.
      for (int ks = 0; ks < kKeyTile / 16; ++ks) {
        const uint32_t p_frag[4] = {pack2<T>(sc[2 * ks][0], sc[2 * ks][1]),
                                    pack2<T>(sc[2 * ks][2], sc[2 * ks][3]),
                                    pack2<T>(sc[2 * ks + 1][0], sc[2 * ks + 1][1]),
                                    pack2<T>(sc[2 * ks + 1][2], sc[2 * ks + 1][3])};
        for (int nd2 = 0; nd2 < D / 16; ++nd2) {
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, v_tile + (ks * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                                    nd2 * 16 + (lane / 16) * 8);
          mma_16816<T>(o[2 * nd2], p_frag, vb[0], vb[1]);
          mma_16816<T>(o[2 * nd2 + 1], p_frag, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next load overwrites it
  }

  for (int offset = 1; offset < 4; offset *= 2) {
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, offset);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, offset);
  }
  const int64_t row_base = int64_t(bh) * s.q_len;
#pragma unroll  // o, l and m are indexed by constants only: they stay in registers
  for (int half = 0; half < 2; ++half) {
    const int row = w0 + g + 8 * half;
    if (row >= s.q_len) continue;
    const float l = half ? l_hi : l_lo, m = half ? m_hi : m_lo;
    const float inv = l > 0.f ? 1.f / l : 0.f;  // a row that sees no key gives zeros
    T* out_row = out + (row_base + row) * D;
    for (int nd = 0; nd < D / 8; ++nd)
      *reinterpret_cast<uint32_t*>(out_row + nd * 8 + 2 * t) =
          pack2<T>(o[nd][2 * half] * inv, o[nd][2 * half + 1] * inv);
    if (t == 0) lse[row_base + row] = l > 0.f ? (m + __log2f(l)) * kLn2 : -INFINITY;
  }
}

}  // namespace qkv::ops::cuda::flash_fwd
