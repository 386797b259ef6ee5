// Torch-free entry points of the kernels (implemented in the .cu files). Each checks its launches
// and throws std::runtime_error on a CUDA error; inputs are validated before, by can_implement
// (support.h).
#pragma once

#include "sla_params.h"
#include "support.h"

#include <cuda_runtime.h>

#include <cstdint>

namespace sla::kernels {

// Block sums of q and k rows: sums (2, B*H, max_blocks, D) float32.
void run_block_pool(const SlaParams& p, float* sums, int max_blocks, cudaStream_t stream);
// The k block sums of `sums` become smooth-k block means in place: block mean − mean of all k rows.
void run_smooth_k(const SlaParams& p, float* sums, int max_blocks, cudaStream_t stream);
// The LUT (into p.lut) rows of heads bh0 .. bh0 + bh_count from the q block sums and the smooth-k
// block means (run_smooth_k) in two passes: the scores of every (query block, key block) into
// scores (bh_count, Nq, Nk) float32, then one warp per row selects.
void run_block_scores_select(const SlaParams& p, const float* sums, int max_blocks, float* scores, int bh0,
                             int bh_count, cudaStream_t stream);
// kv_count (B*H, Nk) and kv_list (B*H, Nk, Nq) from p.lut.
void run_lut_transpose(const SlaParams& p, int32_t* kv_count, int32_t* kv_list, cudaStream_t stream);
// Sparse forward: o, lse.
void run_sla_fwd(const SlaParams& p, cudaStream_t stream);
// Whether the Hopper kernels can run: an sm_90 device, a build with sm_90a code (SLA_HAVE_SM90A),
// and SLA_KERNELS=mma not set in the environment (it forces the mma.sync kernels, for comparisons).
bool hopper_kernels_enabled();
// Whether the Hopper attention kernels run for p: hopper_kernels_enabled(), key blocks of 64 and
// query blocks of 64 or 128.
bool use_sm90_kernels(const SlaParams& p);
// Whether the wgmma dk/dv pass beats the mma.sync one. With query blocks of 64 rows it does; with
// 128 the warp-specialised pass (D 128) does too (H100, whole backward, 128/64, warp-specialised
// against mma.sync: 0.82 vs 1.14 ms at (1,24,4608,128) topk 0.2, a fan-in Nq n / Nk of 7; 4.95 vs
// 5.13 ms at (1,12,32760,128) topk 0.1). The cp.async wgmma pass (D 64, or SLA_WS=0) walks the
// query blocks in 64-row halves and adds the halves' partials, which pays only on long lists of
// query blocks per key block: H200, that pass alone against mma.sync, 0.59 vs 0.55 ms at 4608 topk
// 0.2 (fan-in 7.5), 2.66 vs 2.67 at 32760 topk 0.05 (13); the whole backward at 32760 topk 0.2
// (fan-in 51): 11.95 ms with it, 14.41 with the mma.sync one.
bool sm90_dkdv_pays(const SlaParams& p);
// Whether the dk/dv pass that p selects takes the linear branch's key side in its epilogue
// (SlaParams::lin_ds): the wgmma pass does; the mma.sync pass reads dk_add, dv_add instead.
// SLA_FUSED_KEY_SIDE=0 in the environment turns it off (for comparisons).
bool dkdv_fuses_linear(const SlaParams& p);
// SMs of the current device (asked once per device).
int multiprocessor_count();
// The wgmma forward (sla_fwd_sm90.cu) and backward passes (sla_bwd_sm90.cu), present with SLA_HAVE_SM90A.
void run_sla_fwd_sm90(const SlaParams& p, cudaStream_t stream);
void run_sla_bwd_dq_sm90(const SlaParams& p, cudaStream_t stream);
void run_sla_bwd_dkdv_sm90(const SlaParams& p, cudaStream_t stream);
// Sparse backward in two stages: kDq (delta = rowsum(dO ∘ o) − delta_lin, then dq; reads dq_add) and kDkDv
// (dk and dv; reads dk_add, dv_add), so that the caller can queue the dq pass before it prepares
// dk_add, dv_add.
enum class BwdStage { kDq, kDkDv };
void run_sla_bwd(const SlaParams& p, BwdStage stage, cudaStream_t stream);

// The linear-branch passes of LinearParams (variant all).
void run_linear_state(const LinearParams& p, cudaStream_t stream);
// The state pass on Hopper (linear_sm90.cu, built with SLA_HAVE_SM90A): false where it does not
// apply (D 64) or the driver refuses a tensor map; run_linear_state runs the mma.sync pass then.
bool run_linear_state_sm90(const LinearParams& p, cudaStream_t stream);
// Variant complement's block sums (LinearParams::block_rows): the state pass's mma.sync kernel
// writing S and z per group of rows.
void run_linear_block_sums(const LinearParams& p, cudaStream_t stream);
void run_linear_bwd_q(const LinearParams& p, cudaStream_t stream);
// The query-side pass of variant all on Hopper (linear_sm90.cu), as run_linear_state_sm90.
bool run_linear_bwd_q_sm90(const LinearParams& p, cudaStream_t stream);
void run_linear_bwd_k(const LinearParams& p, cudaStream_t stream);
// The D x D algebra between them (LinearAlgebraParams): after the state pass, and between the
// backward passes (two launches).
void run_linear_state_algebra(const LinearAlgebraParams& p, cudaStream_t stream);
void run_linear_grad_algebra(const LinearAlgebraParams& p, cudaStream_t stream);
// Rows per tile of those passes.
constexpr int linear_tile_rows(int head_dim) { return head_dim; }

// Per-instantiation launchers, defined in *_launch.cuh and instantiated in instantiations/.
template <class Elem, int D, int BQ, int BK>
void run_sla_fwd_(const SlaParams& p, cudaStream_t stream);
template <class Elem, int D, int BQ, int BK>
void run_sla_bwd_(const SlaParams& p, BwdStage stage, cudaStream_t stream);

}  // namespace sla::kernels
