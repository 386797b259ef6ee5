// The shape every sla-ckpt subcommand follows: one source file per subcommand, each with an
// options struct, a register function that adds its CLI11 subcommand, and a run function.
// Exit codes mean the same everywhere.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace slackpt::cli {

enum Exit : int {
  kOk = 0,        // nothing failed (warnings allowed unless --strict)
  kFailed = 1,    // readable, but a check failed or the file has problems
  kUnusable = 2,  // the input cannot be read, or the arguments are wrong
};

// What a register function hands back: the CLI11 subcommand and what to run when it was chosen.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Subcommand register_inspect(CLI::App& parent);
Subcommand register_verify(CLI::App& parent);
Subcommand register_convert(CLI::App& parent);
Subcommand register_regenerate(CLI::App& parent);
#ifdef SLA_HAVE_HUB
Subcommand register_push(CLI::App& parent);
Subcommand register_pull(CLI::App& parent);
Subcommand register_hub(CLI::App& parent);  // "hub serve"
#endif

}  // namespace slackpt::cli
