// Placeholder: replaced by the real subcommand.
#include "cli.h"
#include <fmt/core.h>
namespace slackpt::cli {
Subcommand register_inspect(CLI::App& parent) {
  Subcommand sub;
  sub.app = parent.add_subcommand("inspect", "(not implemented yet)");
  sub.run = [] { fmt::print(stderr, "sla-ckpt inspect: not implemented yet\n"); return int(kUnusable); };
  return sub;
}
}  // namespace slackpt::cli
