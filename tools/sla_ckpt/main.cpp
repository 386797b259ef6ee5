// sla-ckpt: inspect, verify, regenerate and convert sla_attention.pt; push and pull models with it.
// Results go to stdout, logs and errors to stderr; exit codes are in cli.h.
#include "cli.h"

#include <fmt/core.h>

#include <exception>
#include <vector>

#ifndef SLA_TOOLKIT_VERSION
#define SLA_TOOLKIT_VERSION "0.0.0"
#endif

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
  try {
    for (auto& sub : subcommands) {
      if (sub.app->parsed()) return sub.run();
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "sla-ckpt: error: {}\n", e.what());
    return kUnusable;
  }
  return kUnusable;
}
