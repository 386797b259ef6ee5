#include "distributed.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

namespace sla {
namespace {

int64_t sum(const std::vector<int64_t>& values) { return std::accumulate(values.begin(), values.end(), int64_t{0}); }

// Every rank's value of one int64, in rank order (one all-gather).
std::vector<int64_t> all_gather_int(const ProcessGroupPtr& group, int64_t value) {
  const auto options = at::TensorOptions().dtype(at::kLong).device(collective_device(group));
  std::vector<at::Tensor> input{at::full({1}, value, options)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < group->getSize(); ++r) output[0].push_back(at::empty({1}, options));
  group->allgather(output, input)->wait();
  std::vector<int64_t> values;
  for (const at::Tensor& t : output[0]) values.push_back(t.item<int64_t>());
  return values;
}

// Tensors grouped by (device, dtype), in first-seen order (the same on every rank).
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor>& tensors) {
  std::vector<std::vector<at::Tensor>> out;
  std::map<std::tuple<std::string, int>, size_t> index;
  for (const at::Tensor& t : tensors) {
    const auto key = std::make_tuple(t.device().str(), static_cast<int>(t.scalar_type()));
    auto [it, fresh] = index.emplace(key, out.size());
    if (fresh) out.emplace_back();
    out[it->second].push_back(t);
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  for (const at::Tensor& t : tensors) flat.push_back(t.reshape({-1}));
  return at::cat(flat);
}

void unflatten_into(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

// ---- Ulysses exchanges ------------------------------------------------------------------------
// lens[p]: rows of rank p's shard; L = sum(lens); P ranks; N tensors exchanged in one all-to-all.

// N tensors (B, H, lens[r], D) -> N tensors (B, H/P, L, D): head group r of every rank's shard.
std::vector<at::Tensor> seq_to_head(at::TensorList xs, const ProcessGroupPtr& group, const std::vector<int64_t>& lens) {
  const int64_t N = static_cast<int64_t>(xs.size()), P = group->getSize();
  const at::Tensor& x = xs[0];
  const int64_t B = x.size(0), Hp = x.size(1) / P, len = x.size(2), D = x.size(3), L = sum(lens);
  at::Tensor send = at::empty({P, N, B, Hp, len, D}, x.options());  // piece p goes to rank p
  for (int64_t n = 0; n < N; ++n) send.select(1, n).copy_(xs[n].unflatten(1, {P, Hp}).transpose(0, 1));
  at::Tensor recv = at::empty({N * B * Hp * L * D}, x.options());  // rank p's piece: (N, B, Hp, lens[p], D)
  std::vector<int64_t> send_sizes(P, N * B * Hp * len * D), recv_sizes;
  for (int64_t p = 0; p < P; ++p) recv_sizes.push_back(N * B * Hp * lens[p] * D);
  at::Tensor send_flat = send.view({-1});
  group->alltoall_base(recv, send_flat, recv_sizes, send_sizes)->wait();

  std::vector<at::Tensor> out;
  for (int64_t n = 0; n < N; ++n) out.push_back(at::empty({B, Hp, L, D}, x.options()));
  int64_t offset = 0, row = 0;
  for (int64_t p = 0; p < P; ++p) {
    const at::Tensor piece = recv.narrow(0, offset, recv_sizes[p]).view({N, B, Hp, lens[p], D});
    for (int64_t n = 0; n < N; ++n) out[n].narrow(2, row, lens[p]).copy_(piece.select(0, n));
    offset += recv_sizes[p];
    row += lens[p];
  }
  return out;
}

// The inverse: N tensors (B, H/P, L, D) -> N tensors (B, H, lens[r], D).
std::vector<at::Tensor> head_to_seq(at::TensorList ys, const ProcessGroupPtr& group, const std::vector<int64_t>& lens) {
  const int64_t N = static_cast<int64_t>(ys.size()), P = group->getSize(), rank = group->getRank();
  const at::Tensor& y = ys[0];
  const int64_t B = y.size(0), Hp = y.size(1), L = y.size(2), D = y.size(3), len = lens[rank];
  at::Tensor send = at::empty({N * B * Hp * L * D}, y.options());  // piece p (N, B, Hp, lens[p], D) goes to rank p
  std::vector<int64_t> send_sizes, recv_sizes(P, N * B * Hp * len * D);
  int64_t offset = 0, row = 0;
  for (int64_t p = 0; p < P; ++p) {
    send_sizes.push_back(N * B * Hp * lens[p] * D);
    const at::Tensor piece = send.narrow(0, offset, send_sizes[p]).view({N, B, Hp, lens[p], D});
    for (int64_t n = 0; n < N; ++n) piece.select(0, n).copy_(ys[n].narrow(2, row, lens[p]));
    offset += send_sizes[p];
    row += lens[p];
  }
  at::Tensor recv = at::empty({P, N, B, Hp, len, D}, y.options());  // from rank p: its head group
  at::Tensor recv_flat = recv.view({-1});
  group->alltoall_base(recv_flat, send, recv_sizes, send_sizes)->wait();
  std::vector<at::Tensor> out;
  for (int64_t n = 0; n < N; ++n) out.push_back(recv.select(1, n).transpose(0, 1).reshape({B, P * Hp, len, D}));
  return out;
}

std::vector<at::Tensor> zeros_for_undefined(const torch::autograd::variable_list& grads,
                                            const std::vector<int64_t>& shape, const at::TensorOptions& options) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& g : grads) out.push_back(g.defined() ? g : at::zeros(shape, options));
  return out;
}

// The two exchanges as autograd functions: each one's backward is the other exchange.
template <bool kToHeads>
struct Exchange : public torch::autograd::Function<Exchange<kToHeads>> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, at::TensorList xs,
                                                ProcessGroupPtr group, std::vector<int64_t> lens) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["lens"] = lens;
    ctx->saved_data["shape"] = xs[0].sizes().vec();
    at::NoGradGuard no_grad;
    return kToHeads ? seq_to_head(xs, group, lens) : head_to_seq(xs, group, lens);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto group = ctx->saved_data["group"].toCustomClass<c10d::ProcessGroup>();
    const std::vector<int64_t> lens = ctx->saved_data["lens"].toIntVector();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    // The shape of this exchange's outputs, for gradients autograd left undefined.
    std::vector<int64_t> out_shape = shape;
    const int64_t P = group->getSize();
    if (kToHeads) {
      out_shape[1] /= P;
      out_shape[2] = sum(lens);
    } else {
      out_shape[1] *= P;
      out_shape[2] = lens[group->getRank()];
    }
    at::TensorOptions options;
    for (const at::Tensor& g : grads)
      if (g.defined()) options = g.options();
    const std::vector<at::Tensor> filled = zeros_for_undefined(grads, out_shape, options);
    torch::autograd::variable_list out = kToHeads ? head_to_seq(filled, group, lens) : seq_to_head(filled, group, lens);
    out.emplace_back();  // group
    out.emplace_back();  // lens
    return out;
  }
};

}  // namespace

ProcessGroupPtr resolve_process_group(const std::string& group_name) {
  try {
    return c10d::resolve_process_group(group_name);
  } catch (const std::exception&) {
    throw DistributedError("no torch.distributed process group is registered under the name '" + group_name +
                           "' (pass group.group_name of a group this process created)");
  }
}

at::Device collective_device(const ProcessGroupPtr& group) {
  for (const c10::Device& device : group->getDeviceTypes())
    if (device.is_cpu()) return at::Device(at::kCPU);
  const std::vector<c10::Device> types = group->getDeviceTypes();
  if (!types.empty() && types.front().type() != at::kCPU) {  // e.g. NCCL only: the current CUDA device
    return c10::impl::getDeviceGuardImpl(types.front().type())->getDevice();
  }
  return at::Device(at::kCPU);
}

void check_same_on_all_ranks(const ProcessGroupPtr& group, const std::string& what, const std::string& description) {
  if (group->getSize() == 1) return;
  const std::vector<int64_t> sizes = all_gather_int(group, static_cast<int64_t>(description.size()));
  const int64_t longest = *std::max_element(sizes.begin(), sizes.end());
  if (longest == 0) return;  // every description is empty
  const auto options = at::TensorOptions().dtype(at::kByte);
  at::Tensor mine = at::zeros({longest}, options);
  std::copy(description.begin(), description.end(), mine.data_ptr<uint8_t>());
  const at::Device device = collective_device(group);
  std::vector<at::Tensor> input{mine.to(device)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < group->getSize(); ++r) output[0].push_back(at::empty({longest}, options.device(device)));
  group->allgather(output, input)->wait();
  std::vector<std::string> all;
  for (int r = 0; r < group->getSize(); ++r) {
    const at::Tensor bytes = output[0][r].cpu();
    all.emplace_back(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(sizes[r]));
  }
  for (int r = 1; r < group->getSize(); ++r) {
    if (all[r] != all[0]) {
      throw DistributedError(what + " differ between ranks: rank 0 has " + all[0] + ", rank " + std::to_string(r) +
                             " has " + all[r]);
    }
  }
}

void broadcast_from_rank0(const ProcessGroupPtr& group, const std::vector<at::Tensor>& tensors) {
  if (group->getSize() == 1 || tensors.empty()) return;
  at::NoGradGuard no_grad;
  for (const std::vector<at::Tensor>& bucket : buckets(tensors)) {
    std::vector<at::Tensor> flat{flatten(bucket)};
    group->broadcast(flat)->wait();
    unflatten_into(flat[0], bucket);
  }
}

void all_reduce_mean(const ProcessGroupPtr& group, const std::vector<at::Tensor>& tensors) {
  if (group->getSize() == 1 || tensors.empty()) return;
  at::NoGradGuard no_grad;
  for (const std::vector<at::Tensor>& bucket : buckets(tensors)) {
    std::vector<at::Tensor> flat{flatten(bucket)};
    group->allreduce(flat)->wait();  // sum: gloo has no average
    flat[0].div_(group->getSize());
    unflatten_into(flat[0], bucket);
  }
}

void average_gradients(const ProcessGroupPtr& group, const std::vector<at::Tensor>& params) {
  if (group->getSize() == 1) return;
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : params) {
    at::Tensor& grad = const_cast<at::Tensor&>(p).mutable_grad();
    if (!grad.defined()) grad = at::zeros_like(p);
    grads.push_back(grad);
  }
  all_reduce_mean(group, grads);
}

std::vector<int64_t> shard_lengths(int64_t length, int64_t parts) {
  std::vector<int64_t> lens;
  for (int64_t p = 0; p < parts; ++p) lens.push_back(length / parts + (p < length % parts ? 1 : 0));
  return lens;
}

at::Tensor shard_sequence(const at::Tensor& x, int64_t dim, const ProcessGroupPtr& group) {
  const std::vector<int64_t> lens = shard_lengths(x.size(dim), group->getSize());
  const int64_t rank = group->getRank();
  const int64_t start = std::accumulate(lens.begin(), lens.begin() + rank, int64_t{0});
  return x.narrow(dim, start, lens[rank]);
}

at::Tensor ulysses_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const AttentionFn& attention, const ProcessGroupPtr& group, int64_t length) {
  const int64_t P = group->getSize();
  if (P == 1) return attention(q, k, v);
  if (q.dim() != 4 || k.sizes() != q.sizes() || v.sizes() != q.sizes() || k.scalar_type() != q.scalar_type() ||
      v.scalar_type() != q.scalar_type()) {
    throw DistributedError("ulysses_attention: expected q, k, v of one shape (B, H, L/P, D) and one dtype, got q " +
                           c10::str(q.sizes()) + ", k " + c10::str(k.sizes()) + ", v " + c10::str(v.sizes()));
  }
  if (q.size(1) % P != 0) {
    throw DistributedError("ulysses_attention: " + std::to_string(q.size(1)) +
                           " heads cannot be split over a sequence-parallel group of " + std::to_string(P) +
                           " ranks (the head count must be divisible by the group size)");
  }
  std::vector<int64_t> lens;
  if (length < 0) {
    lens = all_gather_int(group, q.size(2));
  } else {
    lens = shard_lengths(length, P);
    if (lens[group->getRank()] != q.size(2)) {
      throw DistributedError("ulysses_attention: rank " + std::to_string(group->getRank()) + " holds " +
                             std::to_string(q.size(2)) + " rows, but its shard of a sequence of " +
                             std::to_string(length) + " rows over " + std::to_string(P) + " ranks has " +
                             std::to_string(lens[group->getRank()]));
    }
  }
  const std::vector<at::Tensor> qkv = Exchange<true>::apply(at::TensorList({q, k, v}), group, lens);
  const at::Tensor o = attention(qkv[0], qkv[1], qkv[2]);
  return Exchange<false>::apply(at::TensorList({o}), group, lens)[0];
}

}  // namespace sla
