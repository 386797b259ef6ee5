// Launcher of the backward for one (dtype, head_dim, blkq, blkk) instantiation, in two stages:
// kDq runs the preprocess and the dq pass, kDkDv the dk/dv pass.
#pragma once

#include "cuda_check.h"
#include "sla_bwd_kernel.cuh"
#include "sla_launch.h"

#include <stdexcept>

namespace sla::kernels {

// 3. dk, dv over each key block's list of query blocks (on Hopper through wgmma)
template <class Elem, int D, int BQ, int BK>
void run_sla_bwd_dkdv_(const SlaParams& p, cudaStream_t stream) {
#ifdef SLA_HAVE_SM90A
  if (use_sm90_kernels(p) && sm90_dkdv_pays(p)) {
    run_sla_bwd_dkdv_sm90(p, stream);
    return;
  }
#endif
  if (p.lin_ds != nullptr) {
    throw std::runtime_error("sla kernels: the linear branch's key side is fused only into the wgmma dk/dv pass "
                             "(dkdv_fuses_linear), not the mma.sync one");
  }
  using Dkdv = BwdDkdvTraits<Elem, D, BQ, BK>;
  auto dkdv_kernel = &sla_bwd_dkdv_kernel<Elem, D, BQ, BK>;
  set_dynamic_smem(dkdv_kernel, Dkdv::kSmemBytes);
  dkdv_kernel<<<dim3(p.num_k_blocks, p.heads, p.batch), Dkdv::kThreads, Dkdv::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

template <class Elem, int D, int BQ, int BK>
void run_sla_bwd_(const SlaParams& p, BwdStage stage, cudaStream_t stream) {
  if (stage == BwdStage::kDkDv) {
    run_sla_bwd_dkdv_<Elem, D, BQ, BK>(p, stream);
    return;
  }
  // 1. delta = rowsum(dO ∘ o_s) = rowsum(dO ∘ o) − delta_lin, 8 rows (warps) per CTA, unless the
  //    linear branch's query-side pass wrote it (delta_ready)
  if (!p.delta_ready) {
    const int64_t rows = int64_t(p.batch) * p.heads * p.seqlen;
    sla_bwd_preprocess_kernel<Elem, D><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p);
    SLA_CUDA_CHECK_LAUNCH();
  }

  // 2. dq over each query block's LUT (on Hopper through wgmma)
#ifdef SLA_HAVE_SM90A
  if (use_sm90_kernels(p)) {
    run_sla_bwd_dq_sm90(p, stream);
  } else
#endif
  {
    using Dq = BwdDqTraits<Elem, D, BQ, BK>;
    auto dq_kernel = &sla_bwd_dq_kernel<Elem, D, BQ, BK>;
    set_dynamic_smem(dq_kernel, Dq::kSmemBytes);
    dq_kernel<<<dim3(p.num_q_blocks, p.heads, p.batch), Dq::kThreads, Dq::kSmemBytes, stream>>>(p);
    SLA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace sla::kernels
