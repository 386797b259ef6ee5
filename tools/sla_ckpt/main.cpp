// sla-ckpt: inspect, verify, regenerate and convert sla_attention.pt; push and pull models with it.
// Results go to stdout, logs and errors to stderr; exit codes are in cli.h, and this file is the
// one place that turns an error into an exit code and a line on stderr.
#include "cli.h"

#include "errors.h"
#include "printable.h"
#ifdef SLA_HAVE_HUB
#include "hub_client.h"
#include "untrusted.h"
#endif

#include <fmt/core.h>

#include <exception>
#include <sstream>
#include <vector>

#ifndef SLA_TOOLKIT_VERSION
#define SLA_TOOLKIT_VERSION "0.0.0"
#endif

namespace slackpt::cli {
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
  } catch (const slahub::HubError& e) {
    report(prefix, e.what(), CliError::Text::kOneLine);
    return e.code() == slahub::kUnsafeCode ? kUnusable : kFailed;
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

}  // namespace
}  // namespace slackpt::cli

int main(int argc, char** argv) {
  using namespace slackpt::cli;
  CLI::App app{"sla-ckpt: the checkpoint toolkit for Sparse-Linear Attention (sla_attention.pt)"};
  app.set_version_flag("--version", "sla-ckpt " SLA_TOOLKIT_VERSION);
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 1 a check failed or the file has problems, 2 unreadable input or bad arguments.");

  std::vector<Subcommand> subcommands = {
      register_inspect(app), register_verify(app), register_convert(app), register_regenerate(app),
#ifdef SLA_HAVE_HUB
      register_push(app),    register_pull(app),   register_hub(app),
#endif
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUnusable;
  }
  for (auto& sub : subcommands) {
    if (sub.app->parsed()) return run_mapped(sub);
  }
  return kUnusable;
}
