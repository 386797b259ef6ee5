// The example's command line (sla-dit-example --help), callable with torch.distributed groups: the
// executable runs it in one process, the operator sla_example::run (dit_ops.cpp, for
// examples/torchrun_dit.py under torchrun) with the groups Python created.
#pragma once

#include "sla/distributed.h"

namespace sla_dit {

struct Parallel {
  sla::ProcessGroupPtr world;     // every rank of the run; empty: one process
  sla::ProcessGroupPtr sequence;  // this rank's Ulysses group (--sequence-parallel P); empty: none
};

// Parses argv (argv[0] is the program name), trains, checkpoints; returns the exit code. Throws on
// errors (the caller prints them).
int run_example(int argc, char** argv, const Parallel& parallel = {});

}  // namespace sla_dit
