// sla_example::run(argv, world_group, sequence_group) -> exit code: the example's command line
// (cli.h) in a Python process that created the torch.distributed groups (examples/torchrun_dit.py);
// groups by name (group.group_name; "" for none: one process, or no sequence parallelism).
#include "cli.h"

#include <torch/library.h>

#include <string>
#include <vector>

namespace sla_dit {
namespace {

int64_t run_op(std::vector<std::string> args, std::string world_group, std::string sequence_group) {
  args.insert(args.begin(), "sla-dit-example");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  Parallel parallel;
  if (!world_group.empty()) parallel.world = sla::resolve_process_group(world_group);
  if (!sequence_group.empty()) parallel.sequence = sla::resolve_process_group(sequence_group);
  return run_example(static_cast<int>(argv.size()), argv.data(), parallel);
}

}  // namespace
}  // namespace sla_dit

TORCH_LIBRARY(sla_example, m) {
  m.def("run(str[] argv, str world_group, str sequence_group) -> int", TORCH_FN(sla_dit::run_op));
}
