// FlashAttention-2 backward on the tensor cores (mma.sync m16n8k16, bf16/f16 in, f32 sums).
// First delta_i = rowsum(dO_i * O_i) per query row (flash_delta_kernel). Then one block per
// (key tile of 128, batch * head); each of its 8 warps owns 16 keys and keeps their dK and dV
// [16, D] in registers while the query tiles of 64 rows stream through shared memory (Q, dO,
// lse, delta; cp.async, two stages). Per query tile a warp recomputes, transposed so that its
// keys are the rows:
//   S^T = K Q^T, P^T = exp(scale S^T - lse) (0 where masked), dP^T = V dO^T,
//   dS^T = P^T (dP^T - delta), dV += P^T dO, dK += dS^T Q (scale applied at the end).
// dS^T goes to shared memory, and after a barrier each warp takes 16 query rows and half the
// columns of dQ = scale dS K over the block's 128 keys and adds them to dq with f32 atomics:
// a block per key tile needs no second pass over the keys (a separate dQ kernel would redo
// S and dP, 7 matrix products instead of 5); the price is that dq's rounding depends on the
// order of the adds, while out, lse, dk and dv are bit-for-bit repeatable. 128 keys per block
// (not 64) halve those atomics and the reloads of Q and dO; shared memory: 92 KiB (D 64),
// 155 KiB (D 128); registers allow one block of 8 warps per multiprocessor.
#pragma once
#include <algorithm>

#include "ops/cuda/flash_attention_device.cuh"

namespace qkv::ops::cuda::flash_bwd {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kKeyTile = 16 * kWarps;  // keys per block
constexpr int kQueryTile = 64;         // query rows per streamed tile
constexpr int kDsStride = kQueryTile + 8;
// In the dQ product, warp w takes the 16 query rows (w % kQueryBlocks) and the columns
// (w / kQueryBlocks) of kDqSplit equal parts, kDqCols at a time (bounds its registers).
constexpr int kQueryBlocks = kQueryTile / 16;
constexpr int kDqSplit = kWarps / kQueryBlocks;
static_assert(kDqSplit * kQueryBlocks == kWarps, "the warps split dQ evenly");
template <int D>
constexpr int kDqCols = std::min(64, D / kDqSplit);

template <int D>
constexpr int kBackwardSmemBytes =
    (2 * kKeyTile + 4 * kQueryTile) * kRowStride<D> * 2 + kKeyTile* kDsStride * 2 +
    4 * kQueryTile * 4;
// One block per multiprocessor, pinned: its 8 warps may use all 255 registers per thread, and
// its tiles fit an H100's 227 KiB of shared memory per block.
constexpr int kBlocksPerSm = 1;
static_assert(kBackwardSmemBytes<128> <= 227 * 1024);

// delta [rows] = rowsum(dout * out) for dout, out [rows, D]: one warp per row.
template <class T, int D>
__global__ void flash_delta_kernel(const T* dout, const T* out, float* delta, int64_t rows) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // uniform within a warp
  float sum = 0.f;
  for (int c = 2 * lane; c < D; c += 64) {
    float2 a = unpack2<T>(*reinterpret_cast<const uint32_t*>(dout + row * D + c));
    float2 b = unpack2<T>(*reinterpret_cast<const uint32_t*>(out + row * D + c));
    sum += a.x * b.x + a.y * b.y;
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) delta[row] = sum;
}

// grad[offset], grad[offset + 1] += a, b (a no-op for a gradient not needed).
template <class T>
__device__ __forceinline__ void add_pair(const FlashGrad& grad, int64_t offset, float a, float b) {
  if (!grad.data) return;
  if (grad.f32) {
    float2* pair = reinterpret_cast<float2*>(static_cast<float*>(grad.data) + offset);
    const float2 old = *pair;
    *pair = make_float2(old.x + a, old.y + b);
  } else {
    uint32_t* pair = reinterpret_cast<uint32_t*>(static_cast<T*>(grad.data) + offset);
    const float2 old = unpack2<T>(*pair);
    *pair = pack2<T>(old.x + a, old.y + b);
  }
}

// c [16, kQueryTile] = a [16, D] b^T for a warp: a and b row-major tiles in shared memory
// (rows of kRowStride<D>), b [kQueryTile, D]; c in C fragments, n-blocks of 8 rows of b.
template <class T, int D>
__device__ __forceinline__ void warp_product_nt(float (&c)[kQueryTile / 8][4], const T* a,
                                                const T* b) {
  constexpr int kStride = kRowStride<D>;
  const int lane = threadIdx.x % 32;
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a_frag[4];
    ldmatrix_x4(a_frag, a + (lane % 16) * kStride + ks * 16 + (lane / 16) * 8);
    for (int nb2 = 0; nb2 < kQueryTile / 16; ++nb2) {
      uint32_t b_frag[4];
      ldmatrix_x4(b_frag, b + (nb2 * 16 + (lane / 16) * 8 + lane % 8) * kStride + ks * 16 +
                              ((lane / 8) % 2) * 8);
      mma_16816<T>(c[2 * nb2], a_frag, b_frag[0], b_frag[1]);
      mma_16816<T>(c[2 * nb2 + 1], a_frag, b_frag[2], b_frag[3]);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    flash_backward_kernel(FlashShape s, const T* dout, const T* q, const T* k, const T* v,
                          const float* lse, const float* delta, float* dq, FlashGrad dk,
                          FlashGrad dv) {
  constexpr int kStride = kRowStride<D>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_tile = reinterpret_cast<T*>(smem);            // [kKeyTile][kStride]
  T* v_tile = k_tile + kKeyTile * kStride;           // [kKeyTile][kStride]
  T* q_tiles = v_tile + kKeyTile * kStride;          // [2][kQueryTile][kStride]
  T* do_tiles = q_tiles + 2 * kQueryTile * kStride;  // [2][kQueryTile][kStride]
  T* ds_tile = do_tiles + 2 * kQueryTile * kStride;  // dS^T [kKeyTile][kDsStride]
  float* lse_tiles = reinterpret_cast<float*>(ds_tile + kKeyTile * kDsStride);  // [2][kQueryTile]
  float* delta_tiles = lse_tiles + 2 * kQueryTile;                              // [2][kQueryTile]

  const int j0 = blockIdx.x * kKeyTile;
  const int bh = blockIdx.y, batch = bh / s.heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const KeyMask mask(s, batch);
  if (j0 >= mask.key_len) return;  // padding keys: no query sees them, no gradient

  const T* q_head = q + int64_t(bh) * s.q_len * D;      // [Lq, D]
  const T* do_head = dout + int64_t(bh) * s.q_len * D;  // [Lq, D]
  const float* lse_head = lse + int64_t(bh) * s.q_len;  // [Lq]
  const float* delta_head = delta + int64_t(bh) * s.q_len;
  // Causal: query i sees key j0 from i = j0 - (Lk - Lq) on.
  const int first_tile = (s.causal ? max(0, j0 - (s.k_len - s.q_len)) : 0) / kQueryTile;
  const int n_tiles = (s.q_len + kQueryTile - 1) / kQueryTile;
  auto load_queries = [&](int tile, int stage) {
    const int i0 = tile * kQueryTile;
    load_tile_async<kQueryTile, D, kThreads>(q_tiles + stage * kQueryTile * kStride, q_head, i0,
                                             s.q_len);
    load_tile_async<kQueryTile, D, kThreads>(do_tiles + stage * kQueryTile * kStride, do_head, i0,
                                             s.q_len);
    for (int i = threadIdx.x; i < 2 * kQueryTile; i += kThreads) {
      const int r = i % kQueryTile, row = i0 + r;
      const bool valid = row < s.q_len, is_delta = i >= kQueryTile;
      cp_async_4((is_delta ? delta_tiles : lse_tiles) + stage * kQueryTile + r,
                 (is_delta ? delta_head : lse_head) + (valid ? row : 0), valid);
    }
  };
  load_tile_async<kKeyTile, D, kThreads>(k_tile, k + int64_t(bh) * s.k_len * D, j0, s.k_len);
  load_tile_async<kKeyTile, D, kThreads>(v_tile, v + int64_t(bh) * s.k_len * D, j0, s.k_len);
  load_queries(first_tile, 0);
  cp_async_commit();

  // This warp's keys: kw0 + g (the c0, c1 half of a C fragment) and kw0 + g + 8 (c2, c3).
  const int kw0 = j0 + warp * 16;
  const float scale_log2 = s.scale * kLog2e;
  float dk_acc[D / 8][4] = {};  // dK [16, D] / scale
  float dv_acc[D / 8][4] = {};  // dV [16, D]

  for (int tile = first_tile; tile < n_tiles; ++tile) {
    const int stage = (tile - first_tile) % 2;
    if (tile + 1 < n_tiles) load_queries(tile + 1, 1 - stage);
    cp_async_commit();
    cp_async_wait<1>();  // this tile (and K, V) have landed
    __syncthreads();     // ... for every thread; and the previous dQ pass is done with ds_tile
    const int i0 = tile * kQueryTile;
    const T* q_t = q_tiles + stage * kQueryTile * kStride;    // [kQueryTile][kStride]
    const T* do_t = do_tiles + stage * kQueryTile * kStride;  // [kQueryTile][kStride]
    const float* lse_t = lse_tiles + stage * kQueryTile;      // [kQueryTile]
    const float* delta_t = delta_tiles + stage * kQueryTile;  // [kQueryTile]

    // S^T [16, kQueryTile] = K_w Q^T: n-blocks of 8 queries.
    float p[kQueryTile / 8][4] = {};
    warp_product_nt<T, D>(p, k_tile + warp * 16 * kStride, q_t);

    // P^T = 2^(scale log2(e) S^T - log2(e) lse), 0 where the query does not see the key (the
    // only case where lse may be -inf).
    const bool need_mask = mask.min_end(i0, kQueryTile) < kw0 + 16;
    for (int nb = 0; nb < kQueryTile / 8; ++nb) {
      for (int e = 0; e < 4; ++e) {
        const int col = nb * 8 + 2 * t + (e % 2);  // query i0 + col
        const int key = kw0 + g + (e < 2 ? 0 : 8);
        const bool visible = !need_mask || key < mask.key_end(i0 + col);
        p[nb][e] = visible ? exp2_approx(p[nb][e] * scale_log2 - lse_t[col] * kLog2e) : 0.f;
      }
    }

    // dP^T [16, kQueryTile] = V_w dO^T, then dS^T = P^T (dP^T - delta).
    float ds[kQueryTile / 8][4] = {};
    warp_product_nt<T, D>(ds, v_tile + warp * 16 * kStride, do_t);
    for (int nb = 0; nb < kQueryTile / 8; ++nb)
      for (int e = 0; e < 4; ++e)
        ds[nb][e] = p[nb][e] * (ds[nb][e] - delta_t[nb * 8 + 2 * t + (e % 2)]);

    // The C fragments of P^T and dS^T as A fragments (k-steps of 16 queries).
    uint32_t p_frag[kQueryTile / 16][4], ds_frag[kQueryTile / 16][4];
    for (int kq = 0; kq < kQueryTile / 16; ++kq) {
      for (int r = 0; r < 4; ++r) {
        const int nb = 2 * kq + r / 2, e = 2 * (r % 2);
        p_frag[kq][r] = pack2<T>(p[nb][e], p[nb][e + 1]);
        ds_frag[kq][r] = pack2<T>(ds[nb][e], ds[nb][e + 1]);
      }
    }

    // dV [16, D] += P^T dO and dK += dS^T Q.
    for (int kq = 0; kq < kQueryTile / 16; ++kq) {
      for (int nd2 = 0; nd2 < D / 16; ++nd2) {
        const int row =
            (kq * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride + nd2 * 16 + (lane / 16) * 8;
        uint32_t dob[4], qb[4];
        ldmatrix_x4_trans(dob, do_t + row);
        ldmatrix_x4_trans(qb, q_t + row);
        mma_16816<T>(dv_acc[2 * nd2], p_frag[kq], dob[0], dob[1]);
        mma_16816<T>(dv_acc[2 * nd2 + 1], p_frag[kq], dob[2], dob[3]);
        mma_16816<T>(dk_acc[2 * nd2], ds_frag[kq], qb[0], qb[1]);
        mma_16816<T>(dk_acc[2 * nd2 + 1], ds_frag[kq], qb[2], qb[3]);
      }
    }

    // dS^T to shared memory (rows: the block's keys), for dQ = dS K across the warps' keys;
    // ds_frag[kq] = rows g, g + 8 of n-block 2 kq, then of n-block 2 kq + 1.
    for (int kq = 0; kq < kQueryTile / 16; ++kq) {
      T* ds_row = ds_tile + (warp * 16 + g) * kDsStride + kq * 16 + 2 * t;
      *reinterpret_cast<uint32_t*>(ds_row) = ds_frag[kq][0];
      *reinterpret_cast<uint32_t*>(ds_row + 8 * kDsStride) = ds_frag[kq][1];
      *reinterpret_cast<uint32_t*>(ds_row + 8) = ds_frag[kq][2];
      *reinterpret_cast<uint32_t*>(ds_row + 8 * kDsStride + 8) = ds_frag[kq][3];
    }
    __syncthreads();

    // dQ rows i0 + m0 + [0, 16) += scale * dS [16, kKeyTile] K [kKeyTile, D], this warp's
    // columns. The A fragments of dS come transposed out of dS^T: matrices (keys, queries)
    // (0, 0), (0, 8), (8, 0), (8, 8) are a0..a3.
    constexpr int kCols = kDqCols<D>;
    const int m0 = (warp % kQueryBlocks) * 16, col_begin = (warp / kQueryBlocks) * (D / kDqSplit);
    for (int c0 = col_begin; c0 < col_begin + D / kDqSplit; c0 += kCols) {
      float dq_acc[kCols / 8][4] = {};
      for (int kk = 0; kk < kKeyTile / 16; ++kk) {
        uint32_t ds_a[4];
        ldmatrix_x4_trans(ds_a, ds_tile + (kk * 16 + (lane / 16) * 8 + lane % 8) * kDsStride + m0 +
                                    ((lane / 8) % 2) * 8);
        for (int nd2 = 0; nd2 < kCols / 16; ++nd2) {
          uint32_t kb[4];
          ldmatrix_x4_trans(kb, k_tile + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride +
                                    c0 + nd2 * 16 + (lane / 16) * 8);
          mma_16816<T>(dq_acc[2 * nd2], ds_a, kb[0], kb[1]);
          mma_16816<T>(dq_acc[2 * nd2 + 1], ds_a, kb[2], kb[3]);
        }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = i0 + m0 + g + 8 * half;
        if (row >= s.q_len) continue;
        float* dq_row = dq + (int64_t(bh) * s.q_len + row) * D + c0;
        for (int nd = 0; nd < kCols / 8; ++nd)
          atomicAdd(
              reinterpret_cast<float2*>(dq_row + nd * 8 + 2 * t),
              make_float2(s.scale * dq_acc[nd][2 * half], s.scale * dq_acc[nd][2 * half + 1]));
      }
    }
  }

  // This block alone owns its keys' rows of dk and dv. (Unrolled, so that the accumulators
  // are indexed by constants and stay in registers.)
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int key = kw0 + g + 8 * half;
    if (key >= s.k_len) continue;
    const int64_t offset = (int64_t(bh) * s.k_len + key) * D + 2 * t;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) {
      add_pair<T>(dk, offset + nd * 8, s.scale * dk_acc[nd][2 * half],
                  s.scale * dk_acc[nd][2 * half + 1]);
      add_pair<T>(dv, offset + nd * 8, dv_acc[nd][2 * half], dv_acc[nd][2 * half + 1]);
    }
  }
}

}  // namespace qkv::ops::cuda::flash_bwd
