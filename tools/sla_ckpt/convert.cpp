// Placeholder: replaced by the real subcommand.
#include "cli.h"
#include <fmt/core.h>
namespace slackpt::cli {
Subcommand register_convert(CLI::App& parent) {
  Subcommand sub;
  sub.app = parent.add_subcommand("convert", "(not implemented yet)");
  sub.run = [] { fmt::print(stderr, "sla-ckpt convert: not implemented yet\n"); return int(kUnusable); };
  return sub;
}
}  // namespace slackpt::cli
