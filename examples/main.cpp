// sla-dit-example: the example's command line (cli.h) in one process. Several processes:
// examples/torchrun_dit.py under torchrun runs the same command line on torch.distributed groups.
#include "cli.h"

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  try {
    return sla_dit::run_example(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "sla-dit-example: error: " << e.what() << "\n";
    return 1;
  }
}
