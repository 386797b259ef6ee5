// sla-dit-example: the example's command line (cli.h) in one process. Several processes:
// examples/torchrun_dit.py under torchrun runs the same command line on torch.distributed groups.
#include "cli.h"

#include <c10/util/Exception.h>

#include <exception>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  try {
    return sla_dit::run_example(argc, argv);
  } catch (const c10::Error& e) {  // LibTorch's (an allocation that failed): its first line, not its backtrace
    const std::string message = e.what_without_backtrace();
    std::cerr << "sla-dit-example: error: " << message.substr(0, message.find('\n')) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "sla-dit-example: error: " << e.what() << "\n";
    return 1;
  }
}
