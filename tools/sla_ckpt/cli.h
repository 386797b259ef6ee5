// The shape every sla-ckpt subcommand follows: one source file per subcommand, each with an
// options struct, a register function that adds its CLI11 subcommand, and a run function.
// Exit codes mean the same everywhere, and main.cpp alone maps errors to them: a run function
// returns an Exit for results (ok, a check failed) and throws for failures, either a library's
// own error (CheckpointError, HubError, std::invalid_argument for bad arguments) or a CliError
// that names its exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sla::cli {

enum Exit : int {
  kOk = 0,        // nothing failed (warnings allowed unless --strict)
  kFailed = 1,    // readable, but a check failed or the file has problems
  kUnusable = 2,  // the input cannot be read, or the arguments are wrong
};

// A failure with its exit code; main prints "sla-ckpt <subcommand>: <message>" on stderr. The
// message is one line, escaped when printed, unless made of lines that the tool itself built
// (kLines: each line is escaped and printed).
class CliError : public std::runtime_error {
 public:
  enum class Text { kOneLine, kLines };
  CliError(Exit code, const std::string& message, Text text = Text::kOneLine)
      : std::runtime_error(message), code_(code), text_(text) {}
  Exit code() const noexcept { return code_; }
  Text text() const noexcept { return text_; }

 private:
  Exit code_;
  Text text_;
};

// What a register function hands back: the CLI11 subcommand, what to run when it was chosen, and
// the name errors are prefixed with ("sla-ckpt <name>: "; empty: the subcommand's own name).
struct Subcommand {
  Subcommand(CLI::App* app_ = nullptr, std::function<int()> run_ = {}, std::string name_ = {})
      : app(app_), run(std::move(run_)), name(std::move(name_)) {}
  CLI::App* app;
  std::function<int()> run;
  std::string name;
};

// This process's command line, as main received it (regenerate hands it on unchanged).
const std::vector<std::string>& command_line();

Subcommand register_inspect(CLI::App& parent);
Subcommand register_verify(CLI::App& parent);
Subcommand register_convert(CLI::App& parent);
Subcommand register_regenerate(CLI::App& parent);
#ifdef SLA_HAVE_HUB
Subcommand register_push(CLI::App& parent);
Subcommand register_pull(CLI::App& parent);
Subcommand register_hub(CLI::App& parent);  // "hub serve"
#endif

}  // namespace sla::cli
