// SLA on torch.distributed (c10d): the collectives the trainer hooks need under data parallelism,
// and Ulysses sequence parallelism.
//
// Everything here works on a c10d::ProcessGroup of any backend (gloo on CPUs, NCCL on GPUs): this
// file never creates one. A C++ trainer passes the group it built; a Python process passes the name
// of a group it created with torch.distributed (`group.group_name`), which resolve_process_group
// turns into the same object (torch registers every group it creates under its name).
//
// Collective contract: every function below is a collective of its group. All ranks call it, in the
// same order, with tensors of one shape per argument (checked where a mismatch could otherwise hang
// or corrupt: check_same_on_all_ranks). Metadata collectives run on the CPU when the group has a CPU
// backend, else on the current CUDA device.
//
// Ulysses (DeepSpeed-Ulysses): q, k, v arrive sharded along the sequence, rank r holding rows
// [start_r, start_r + len_r) of every head (shards as torch.tensor_split makes them: the first
// L mod P ranks one row longer). One all-to-all gives each rank the whole sequence for H/P heads
// (rank r: heads [r H/P, (r+1) H/P)); attention runs there on the full sequence, exactly as one
// process would; a second all-to-all returns the output to the sequence layout. Uneven shards
// exchange uneven pieces (alltoall with split sizes): nothing is padded, so the block map and the
// linear branch see exactly the L real rows. The backward of each exchange is the other one.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sla {

using ProcessGroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;

// Ranks disagree (settings, modules, shapes), a group name is unknown, or a layout cannot be
// split (H not divisible by P). One line naming what differs and where.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The group torch.distributed registered under this name (Python: `group.group_name`; the default
// group is `torch.distributed.group.WORLD.group_name`). Throws DistributedError for an unknown name.
ProcessGroupPtr resolve_process_group(const std::string& group_name);

// The device a collective of this group can use for small metadata tensors.
at::Device collective_device(const ProcessGroupPtr& group);

// Every rank passes its own description of `what` (e.g. "SLA settings"). When they differ, every
// rank throws the same DistributedError naming the first differing rank and both descriptions:
//   "SLA settings differ between ranks: rank 0 has <a>, rank 1 has <b>".
void check_same_on_all_ranks(const ProcessGroupPtr& group, const std::string& what, const std::string& description);

// Overwrites `tensors` on every rank with rank 0's values (in place, no autograd).
void broadcast_from_rank0(const ProcessGroupPtr& group, const std::vector<at::Tensor>& tensors);

// Replaces every tensor by its mean over the group (in place, no autograd): one all-reduce per
// (device, dtype) bucket over a flattened copy. All ranks end with the same bits.
void all_reduce_mean(const ProcessGroupPtr& group, const std::vector<at::Tensor>& tensors);

// Averages the gradients of `params` over the group, in place (the DDP rule: the gradient of the
// mean of the ranks' losses). A parameter without a gradient on this rank counts as zero and gets
// a zero gradient, so every rank takes part in the same all-reduce.
void average_gradients(const ProcessGroupPtr& group, const std::vector<at::Tensor>& params);

// The shard lengths of a sequence of `length` rows over `parts` ranks (torch.tensor_split's rule).
std::vector<int64_t> shard_lengths(int64_t length, int64_t parts);

// This rank's shard of x along `dim` (a view; shard_lengths' rule).
at::Tensor shard_sequence(const at::Tensor& x, int64_t dim, const ProcessGroupPtr& group);

// Attention on the whole sequence: q, k, v (B, h, L, D) -> o (B, h, L, D).
using AttentionFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>;

// Ulysses: q, k, v (B, H, len_r, D) are this rank's shards of a sequence of `length` rows
// (-1: every rank's len_r is gathered first, one small collective); returns this rank's shard of
// attention(q, k, v) on the whole sequence, (B, H, len_r, D). Differentiable in q, k, v and in
// whatever `attention` captures (e.g. proj_l: each rank's gradient then covers its H/P heads; the
// trainer's gradient averaging makes them the mean over ranks, as for every shared parameter).
// A group of one rank calls attention(q, k, v) directly. Throws DistributedError when H is not
// divisible by the group size, and when the shards do not add up to `length`.
at::Tensor ulysses_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const AttentionFn& attention, const ProcessGroupPtr& group, int64_t length = -1);

}  // namespace sla
