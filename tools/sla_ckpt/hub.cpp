// Placeholder: replaced by the real subcommand.
#include "cli.h"
#include <fmt/core.h>
namespace slackpt::cli {
Subcommand register_hub(CLI::App& parent) {
  Subcommand sub;
  sub.app = parent.add_subcommand("hub", "(not implemented yet)");
  sub.run = [] { fmt::print(stderr, "sla-ckpt hub: not implemented yet\n"); return int(kUnusable); };
  return sub;
}
}  // namespace slackpt::cli
