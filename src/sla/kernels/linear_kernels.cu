// Launchers of the linear-branch passes (linear_kernels.cuh), one instantiation per dtype and head_dim.
#include "cuda_check.h"
#include "linear_algebra.cuh"
#include "linear_kernels.cuh"
#include "linear_launch.h"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

namespace sla::kernels {

namespace {

template <class Kernel>
void launch(Kernel kernel, dim3 grid, int threads, int smem, const LinearParams& p, cudaStream_t stream) {
  set_dynamic_smem(kernel, smem);
  kernel<<<grid, threads, smem, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

// Asked once per kernel and device: every forward and backward sizes its passes with it.
template <class Kernel>
int resident(Kernel kernel, int threads, int smem) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> known;  // (kernel, device) -> CTAs per SM
  int device = 0;
  SLA_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), device);
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto it = known.find(key);
    if (it != known.end()) return it->second;
  }
  set_dynamic_smem(kernel, smem);
  int ctas = 0;
  SLA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, threads, smem));
  ctas = std::max(ctas, 1);
  const std::lock_guard<std::mutex> lock(mutex);
  known[key] = ctas;
  return ctas;
}

// The query-side pass's kernel and dynamic shared memory for p: per query block (variant
// complement, LinearParams::q_block_tiles > 0; two per tile with tile_q_blocks 2) or over each
// CTA's tiles (variant all).
template <class Elem, int kD>
std::pair<void (*)(LinearParams), int> bwd_q_kernel(const LinearParams& p) {
  using Tr = LinearTraits<kD>;
  if (p.q_block_tiles > 0 && p.tile_q_blocks == 2) {
    return {&sla_linear_bwd_q_kernel<Elem, kD, true, 2>, Tr::kBwdQTwoBlockSmem};
  }
  if (p.q_block_tiles > 0) return {&sla_linear_bwd_q_kernel<Elem, kD, true>, Tr::kBwdQPerBlockSmem};
  return {&sla_linear_bwd_q_kernel<Elem, kD, false>, Tr::kBwdQSmem};
}

}  // namespace

int linear_resident_ctas(const LinearParams& p, LinearPass pass) {
  return SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    return SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      using Tr = LinearTraits<kD>;
      switch (pass) {
        case LinearPass::kState: return resident(&sla_linear_state_kernel<Elem, kD>, Tr::kThreads, Tr::kStateSmem);
        case LinearPass::kBwdQ: {
          const auto [kernel, smem] = bwd_q_kernel<Elem, kD>(p);
          return resident(kernel, Tr::kThreads, smem);
        }
        case LinearPass::kBwdK: return resident(&sla_linear_bwd_k_kernel<Elem, kD>, Tr::kThreads, Tr::kBwdKSmem);
      }
      return 1;
    });
  });
}

void run_linear_state(const LinearParams& p, cudaStream_t stream) {
#ifdef SLA_HAVE_SM90A
  if (hopper_kernels_enabled() && warp_specialised_enabled() && run_linear_state_sm90(p, stream)) return;
#endif
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      using Tr = LinearTraits<kD>;
      launch(&sla_linear_state_kernel<Elem, kD>, dim3(p.splits, p.batch * p.heads), Tr::kThreads, Tr::kStateSmem, p,
             stream);
    });
  });
}

void run_linear_block_sums(const LinearParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      using Tr = LinearTraits<kD>;
      const dim3 grid(p.splits, p.batch * p.heads);
      if (p.block_sums_f32) {
        launch(&sla_linear_state_kernel<Elem, kD, float>, grid, Tr::kThreads, Tr::kStateSmem, p, stream);
      } else {
        launch(&sla_linear_state_kernel<Elem, kD, Elem>, grid, Tr::kThreads, Tr::kStateSmem, p, stream);
      }
    });
  });
}

void run_linear_bwd_q(const LinearParams& p, cudaStream_t stream) {
#ifdef SLA_HAVE_SM90A
  if (hopper_kernels_enabled() && warp_specialised_enabled() && run_linear_bwd_q_sm90(p, stream)) return;
#endif
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      const auto [kernel, smem] = bwd_q_kernel<Elem, kD>(p);
      launch(kernel, dim3(p.splits, p.batch * p.heads), LinearTraits<kD>::kThreads, smem, p, stream);
    });
  });
}

void run_linear_bwd_k(const LinearParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      using Tr = LinearTraits<kD>;
      launch(&sla_linear_bwd_k_kernel<Elem, kD>, dim3(p.splits, p.batch * p.heads), Tr::kThreads, Tr::kBwdKSmem, p,
             stream);
    });
  });
}

void run_linear_state_algebra(const LinearAlgebraParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      sla_linear_state_algebra_kernel<Elem, kD><<<dim3(p.bh, kD / kAlgebraRows), kAlgebraThreads, 0, stream>>>(p);
      SLA_CUDA_CHECK_LAUNCH();
    });
  });
}

void run_linear_grad_algebra(const LinearAlgebraParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      const dim3 grid(p.bh, kD / kAlgebraRows);
      sla_linear_grad_algebra_kernel<kD><<<grid, kAlgebraThreads, 0, stream>>>(p);
      SLA_CUDA_CHECK_LAUNCH();
      sla_linear_grad_normalise_kernel<Elem, kD><<<grid, kAlgebraThreads, 0, stream>>>(p);
      SLA_CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace sla::kernels
