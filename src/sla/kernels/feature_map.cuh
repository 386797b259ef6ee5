// The feature map φ of the linear branch on register tiles, forward and backward, shared by the
// forward epilogue and the linear-branch kernels.
#pragma once

#include "warp_mma.cuh"

#include <cmath>

namespace sla::kernels {

// φ applied row-wise to a warp's 16 x D tile held as A fragments (each row spread over a quad of
// lanes), repacked as A fragments; den[half] = φ(row)·z + eps for rows g and g + 8 (z may be
// null: den = eps). feature_map: 0 softmax over D, 1 elu(x) + 1, 2 relu(x).
template <int D, class Elem>
__device__ __forceinline__ void feature_map_rows(uint32_t (&a_phi)[D / 16][4], float (&den)[2],
                                                 const uint32_t (&a_x)[D / 16][4], int feature_map, const float* z,
                                                 float eps, int lane) {
  const int t = lane & 3;
  float x[D / 16][4][2];  // [kk][register][element]; register r holds row g + 8 (r & 1), cols 16kk + 8 (r >> 1) + 2t + e
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const Elem* pair = reinterpret_cast<const Elem*>(&a_x[kk][r]);
      x[kk][r][0] = to_float(pair[0]);
      x[kk][r][1] = to_float(pair[1]);
    }
  }
  float norm[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = -INFINITY, sum = 0.f;
    if (feature_map == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int r = half; r < 4; r += 2) mx = fmaxf(mx, fmaxf(x[kk][r][0], x[kk][r][1]));
      mx = quad_max(mx);
    }
    // φ elementwise, the choice of map made once per row half (not per element).
    auto apply = [&](auto phi) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int r = half; r < 4; r += 2) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            x[kk][r][e] = phi(x[kk][r][e]);
            sum += x[kk][r][e];
          }
        }
      }
    };
    if (feature_map == 0) {
      apply([mx](float v) { return __expf(v - mx); });
    } else if (feature_map == 1) {
      apply([](float v) { return v > 0.f ? v + 1.f : __expf(v); });
    } else {
      apply([](float v) { return fmaxf(v, 0.f); });
    }
    norm[half] = feature_map == 0 ? 1.f / quad_sum(sum) : 1.f;
  }
  // Normalised, and φ·z of both halves in one pass over the columns: each pair of z is loaded once
  // (a float2) for both rows.
  float dot[2] = {0.f, 0.f};
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const float2 zc = z != nullptr ? *reinterpret_cast<const float2*>(z + 16 * kk + 8 * c + 2 * t) : float2{};
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float(&xr)[2] = x[kk][half + 2 * c];
        xr[0] *= norm[half];
        xr[1] *= norm[half];
        if (z != nullptr) {
          dot[half] += xr[0] * zc.x;
          dot[half] += xr[1] * zc.y;
        }
      }
    }
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) den[half] = quad_sum(dot[half]) + eps;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) a_phi[kk][r] = pack2<Elem>(x[kk][r][0], x[kk][r][1]);
}

// φ row-wise in place on a warp's 16 x D tile of A fragments, without den and without a float
// copy of the tile (for epilogues where two 16 x D accumulators are already live): the same
// values as feature_map_rows, whose order of operations it follows, exponentials recomputed.
template <int D, class Elem>
__device__ __forceinline__ void feature_map_rows_in_place(uint32_t (&a)[D / 16][4], int feature_map) {
  auto elem = [&](int kk, int r, int e) { return to_float(reinterpret_cast<const Elem*>(&a[kk][r])[e]); };
  float mx[2] = {-INFINITY, -INFINITY}, norm[2] = {1.f, 1.f};
  if (feature_map == 0) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int r = half; r < 4; r += 2) mx[half] = fmaxf(mx[half], fmaxf(elem(kk, r, 0), elem(kk, r, 1)));
      mx[half] = quad_max(mx[half]);
      float sum = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int r = half; r < 4; r += 2)
#pragma unroll
          for (int e = 0; e < 2; ++e) sum += __expf(elem(kk, r, e) - mx[half]);
      norm[half] = 1.f / quad_sum(sum);
    }
  }
  // φ(v) of row half `half`, the choice of map made once (not per element).
  auto apply = [&](auto phi) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int r = 0; r < 4; ++r) a[kk][r] = pack2<Elem>(phi(elem(kk, r, 0), r & 1), phi(elem(kk, r, 1), r & 1));
    }
  };
  if (feature_map == 0) {
    apply([&](float v, int half) { return __expf(v - mx[half]) * norm[half]; });
  } else if (feature_map == 1) {
    apply([](float v, int) { return v > 0.f ? v + 1.f : __expf(v); });
  } else {
    apply([](float v, int) { return fmaxf(v, 0.f); });
  }
}

// Element (j, half, e) of a 16 x D C-layout tile (row g + 8 half, column 8j + 2t + e) read from
// the same tile held as A fragments (see warp_mma.cuh): a[j / 2][half + 2 (j % 2)], element e.
template <int D, class Elem>
__device__ __forceinline__ float a_frag_elem(const uint32_t (&a)[D / 16][4], int j, int half, int e) {
  const Elem* pair = reinterpret_cast<const Elem*>(&a[j / 2][half + 2 * (j % 2)]);
  return to_float(pair[e]);
}

// In place: grad (16 x D, C layout) holds dL/dφ and becomes dL/dx, with φ given as A fragments.
// softmax: φ ∘ (dφ − rowsum(dφ ∘ φ)); elu + 1: dφ where φ > 1 (x > 0), else dφ φ (φ = e^x);
// relu: dφ where φ > 0. The derivative is read off φ alone, so x need not stay in registers.
template <int D, class Elem>
__device__ __forceinline__ void feature_map_backward_rows(float (&grad)[D / 8][4], const uint32_t (&a_phi)[D / 16][4],
                                                          int feature_map) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float rowdot = 0.f;
    if (feature_map == 0) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) rowdot += grad[j][2 * half + e] * a_frag_elem<D, Elem>(a_phi, j, half, e);
      rowdot = quad_sum(rowdot);
    }
    // d ← dL/dx from d = dL/dφ and φ, the choice of map made once per row half.
    auto apply = [&](auto dx) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& d = grad[j][2 * half + e];
          d = dx(d, a_frag_elem<D, Elem>(a_phi, j, half, e));
        }
      }
    };
    if (feature_map == 0) {
      apply([rowdot](float d, float phi) { return phi * (d - rowdot); });
    } else if (feature_map == 1) {
      apply([](float d, float phi) { return phi > 1.f ? d : d * phi; });
    } else {
      apply([](float d, float phi) { return phi > 0.f ? d : 0.f; });
    }
  }
}

}  // namespace sla::kernels
