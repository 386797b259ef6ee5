// sla-ckpt: inspect, verify, regenerate and convert sla_attention.pt; push and pull models with it.
// Results go to stdout, logs and errors to stderr; exit codes are in cli.h, and this file is the
// one place that turns an error into an exit code and a line on stderr.
#include "cli.h"

#include "sla/checkpoint/errors.h"
#include "printable.h"
#ifdef SLA_HAVE_HUB
#include "sla/hub/hub_client.h"
#include "sla/hub/untrusted.h"
#endif

#include <fmt/core.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

#ifndef SLA_TOOLKIT_VERSION
#define SLA_TOOLKIT_VERSION "0.0.0"
#endif

namespace sla::cli {
using namespace sla::checkpoint;  // the CLI speaks the checkpoint library's types throughout

static std::vector<std::string> g_command_line;
const std::vector<std::string>& command_line() { return g_command_line; }

namespace {

// Prints the message of a failure, prefixed, every line escaped.
void report(const std::string& prefix, const std::string& message, CliError::Text text) {
  if (text == CliError::Text::kOneLine) {
    say(stderr, prefix + message);
    return;
  }
  std::istringstream lines(message);
  std::string line;
  for (bool first = true; std::getline(lines, line); first = false) say(stderr, (first ? prefix : std::string()) + line);
}

// The exit-code table: what each error type means for the caller.
//   CliError               its own code
//   HubError E_HUB_UNSAFE  2: the server sent a value that cannot be used (or --revision cannot be)
//   HubError (other)       1: the Hub failed or refused
//   CheckpointError        2: the input cannot be read
//   std::invalid_argument  2: bad arguments
//   anything else          2, as "sla-ckpt: error: ..."
int run_mapped(const Subcommand& sub) {
  const std::string prefix = "sla-ckpt " + (sub.name.empty() ? sub.app->get_name() : sub.name) + ": ";
  try {
    return sub.run();
  } catch (const CliError& e) {
    report(prefix, e.what(), e.text());
    return e.code();
#ifdef SLA_HAVE_HUB
  } catch (const sla::hub::HubError& e) {
    report(prefix, e.what(), CliError::Text::kOneLine);
    return sla::hub::is_unusable_input(e) ? kUnusable : kFailed;
#endif
  } catch (const CheckpointError& e) {
    report(prefix, e.what(), CliError::Text::kOneLine);
    return kUnusable;
  } catch (const std::invalid_argument& e) {
    report(prefix, e.what(), CliError::Text::kOneLine);
    return kUnusable;
  } catch (const std::exception& e) {
    report("sla-ckpt: error: ", e.what(), CliError::Text::kOneLine);
    return kUnusable;
  }
}

// Edits (insert, delete, substitute, swap of neighbours) that turn a into b.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The first argument when it is neither an option nor a command: one line naming it, and the
// closest command when one is within two edits ("did you mean"), else the list of commands.
std::optional<std::string> unknown_command(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return std::nullopt;
  const std::string word = argv[1];
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  if (std::find(names.begin(), names.end(), word) != names.end()) return std::nullopt;
  std::string best;
  size_t best_distance = 3;
  for (const auto& name : names) {
    size_t distance = edit_distance(word, name);
    if (distance < best_distance) best = name, best_distance = distance;
  }
  std::string line = "sla-ckpt: unknown command '" + word + "'";  // say() escapes it
  if (!best.empty()) return line + "; did you mean '" + best + "'?";
  std::string list;
  for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
  return line + "; the commands are " + list;
}

// A command-line error: one line naming the command, then where to find the usage. Help and
// --version are not errors and go through CLI11 as usual.
int report_parse_error(const CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e) == 0 ? kOk : kUnusable;
  std::string command;
  for (const CLI::App* sub : app.get_subcommands({}))
    if (sub->parsed()) command = sub->get_name();
  const std::string prefix = command.empty() ? "sla-ckpt: " : "sla-ckpt " + command + ": ";
  say(stderr, prefix + e.what());
  say(stderr, prefix + "see 'sla-ckpt " + (command.empty() ? "" : command + " ") + "--help'");
  return kUnusable;
}

}  // namespace
}  // namespace sla::cli

int main(int argc, char** argv) {
  using namespace sla::cli;
  CLI::App app{"sla-ckpt: the checkpoint toolkit for Sparse-Linear Attention (sla_attention.pt)"};
  app.set_version_flag("--version", "sla-ckpt " SLA_TOOLKIT_VERSION);
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 1 a check failed or the file has problems, 2 unreadable input or bad arguments.");

  g_command_line.assign(argv, argv + argc);
  // Past a file-size limit (ulimit -f) a write then fails with EFBIG, and the durable write
  // removes its temp file and reports E_WRITE, where the default action would kill the process
  // and leave the temp file behind.
  std::signal(SIGXFSZ, SIG_IGN);
  std::vector<Subcommand> subcommands = {
#ifdef SLA_REGENERATE_IN_PROCESS  // sla-ckpt-regenerate: the regenerate subcommand alone, with LibTorch
      register_regenerate(app),
#else
      register_inspect(app), register_verify(app), register_convert(app), register_regenerate(app),
#ifdef SLA_HAVE_HUB
      register_push(app),    register_pull(app),   register_hub(app),
#endif
#endif
  };
  if (auto line = unknown_command(app, argc, argv)) {
    say(stderr, *line);
    return kUnusable;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e);
  }
  for (auto& sub : subcommands) {
    if (sub.app->parsed()) return run_mapped(sub);
  }
  return kUnusable;
}
