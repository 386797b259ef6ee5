// Placeholder: replaced by the real subcommand.
#include "cli.h"
#include <fmt/core.h>
namespace slackpt::cli {
Subcommand register_regenerate(CLI::App& parent) {
  Subcommand sub;
  sub.app = parent.add_subcommand("regenerate", "(not implemented yet)");
  sub.run = [] { fmt::print(stderr, "sla-ckpt regenerate: not implemented yet\n"); return int(kUnusable); };
  return sub;
}
}  // namespace slackpt::cli
