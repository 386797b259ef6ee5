// sla-dit-example's command line: trains the small DiT of dit.h with SLA (or plain SDPA) on
// synthetic images, writes checkpoint-<step>/ folders and resumes from them. Losses go to stdout as
// JSON lines (rank 0's only, unless --print-all-ranks), logs to stderr.
#include "cli.h"

#include "dit.h"
#include "dit_regenerate.h"

#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <regex>

namespace sla_dit {
namespace fs = std::filesystem;

namespace {

// The checkpoint-<step> folder with the highest step under dir, or "" when none.
std::string latest_checkpoint(const fs::path& dir) {
  const std::regex pattern("checkpoint-([0-9]+)");
  std::string best;
  long long best_step = -1;
  if (!fs::is_directory(dir)) return best;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && std::regex_match(name, m, pattern) && fs::exists(entry.path() / "training_state.json") &&
        std::stoll(m[1]) > best_step) {
      best_step = std::stoll(m[1]);
      best = entry.path().string();
    }
  }
  return best;
}

}  // namespace

int run_example(int argc, char** argv, const Parallel& parallel) {
  TrainOptions options;
  int64_t steps = 40;
  int64_t checkpoint_every = 0;
  std::string output_dir = "sla-dit-output";
  std::string resume_from;
  int threads = 1;

  CLI::App app{
      "Trains a small DiT with Sparse-Linear Attention on synthetic images (CPU or CUDA).\n"
      "Example:\n"
      "  sla-dit-example --output-dir run --steps 40 --checkpoint-every 20 \\\n"
      "      --attention-mechanism sla --sla-config \"{'topk': 0.25, 'blkq': 64, 'blkk': 64}\"\n"
      "  sla-dit-example --output-dir run --steps 60 --resume-from run/checkpoint-40\n"
      "Several processes (data parallelism; --sequence-parallel P for Ulysses), same options:\n"
      "  torchrun --nproc-per-node 2 examples/torchrun_dit.py --output-dir run --steps 40 [--sequence-parallel 2]"};
  app.add_option("--steps", steps, "total optimizer steps (a resumed run continues up to this step)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--checkpoint-every", checkpoint_every, "write checkpoint-<step>/ every N steps (0: only at the end)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--output-dir", output_dir, "folder for the checkpoint-<step>/ folders");
  app.add_option("--sla-config", options.sla_config, "SLA settings as JSON or a Python dict, e.g. \"{'topk': 0.2}\"");
  std::string state_dtype = "auto";
  app.add_option("--state-dtype", state_dtype,
                 "dtype of the saved SLA entries for a float32 (CPU) run: bf16, fp16, auto (bf16, what SimpleTuner "
                 "looks up) or none (only the run's own <D>:fp32 entries, which SimpleTuner ignores)")
      ->check(CLI::IsMember({"bf16", "fp16", "auto", "none"}));
  app.add_option("--attention-mechanism", options.attention_mechanism, "sla or sdpa")
      ->check(CLI::IsMember({"sla", "sdpa"}));
  app.add_option("--seed", options.seed, "seed of the weights and of every batch");
  app.add_option("--resume-from", resume_from, "a checkpoint folder, or 'latest' (the newest one in --output-dir)");
  app.add_option("--device", options.device, "cpu or cuda[:N]");
  app.add_option("--batch-size", options.batch_size, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--learning-rate", options.learning_rate, "AdamW learning rate")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads (the model is tiny: one is fastest and deterministic)")
      ->check(CLI::PositiveNumber);
  int64_t sequence_parallel = 1;
  app.add_option("--sequence-parallel", sequence_parallel,
                 "ranks that split each image's tokens (Ulysses; under torchrun through examples/torchrun_dit.py, "
                 "which creates the groups: consecutive ranks, P dividing the world size and the head count)")
      ->check(CLI::PositiveNumber);
  bool print_all_ranks = false;
  app.add_flag("--print-all-ranks", print_all_ranks,
               "every rank prints its step lines, with its rank and a digest of its SLA parameters' bytes");
  RegenerateOptions regenerate;
  app.add_option("--regenerate", regenerate.checkpoint_dir,
                 "rebuild a missing sla_attention.pt of one of this example's checkpoints with one step of its own "
                 "objective in which only proj_l learns (any model: sla-ckpt regenerate)");
  app.add_flag("--force", regenerate.force, "with --regenerate: replace a valid sla_attention.pt");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!regenerate.checkpoint_dir.empty()) {
    regenerate.sla_config = options.sla_config;
    regenerate.device = app.count("--device") ? options.device : "auto";
    regenerate_checkpoint(regenerate);
    return 0;
  }

  const int64_t sequence_group_size = parallel.sequence ? parallel.sequence->getSize() : 1;
  if (sequence_parallel != sequence_group_size) {
    const std::string has =
        parallel.world ? "a sequence-parallel group of " + std::to_string(sequence_group_size) + " ranks"
                       : "no process group (run it under torchrun through examples/torchrun_dit.py)";
    throw std::invalid_argument("--sequence-parallel " + std::to_string(sequence_parallel) + ": this process has " +
                                has);
  }
  options.world_group = parallel.world;
  options.sequence_group = parallel.sequence;
  options.state_dtype = state_dtype == "none" ? "" : state_dtype;
  at::set_num_threads(threads);
  if (resume_from == "latest") {
    resume_from = latest_checkpoint(output_dir);
    if (resume_from.empty()) std::cerr << "no checkpoint in " << output_dir << "; starting from scratch\n";
  }
  std::unique_ptr<Trainer> trainer;
  if (resume_from.empty()) {
    trainer = std::make_unique<Trainer>(options);
  } else {
    // Settings of this run win; the model shape must match the checkpoint's.
    trainer = Trainer::from_checkpoint(resume_from, &options);
    if (trainer->rank() == 0) std::cerr << "resumed from " << resume_from << " at step " << trainer->step() << "\n";
  }
  const bool prints = trainer->rank() == 0 || print_all_ranks;

  const auto start = std::chrono::steady_clock::now();
  while (trainer->step() < steps) {
    const double loss = trainer->train_step();
    if (print_all_ranks) {
      std::printf("{\"step\": %lld, \"loss\": %.9g, \"rank\": %d, \"sla_digest\": \"%s\"}\n",
                  static_cast<long long>(trainer->step()), loss, trainer->rank(), trainer->sla_digest().c_str());
    } else if (prints) {
      std::printf("{\"step\": %lld, \"loss\": %.9g}\n", static_cast<long long>(trainer->step()), loss);
    }
    std::fflush(stdout);
    const bool last = trainer->step() == steps;
    if ((checkpoint_every > 0 && trainer->step() % checkpoint_every == 0) || last) {
      const fs::path dir = fs::path(output_dir) / ("checkpoint-" + std::to_string(trainer->step()));
      trainer->save_checkpoint(dir.string());
      if (trainer->rank() == 0) std::cerr << "saved " << dir.string() << "\n";
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (prints) std::cerr << "trained to step " << trainer->step() << " in " << seconds << " s\n";
  return 0;
}

}  // namespace sla_dit
