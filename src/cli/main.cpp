// The sd35 command. Subcommands register themselves in cli/commands.h.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"sd35: Stable Diffusion 3.5 Medium inference engine"};
  app.require_subcommand(1);
  int exit_code = 0;
  sd35::cli::register_inspect(app, exit_code);
  sd35::cli::register_golden(app, exit_code);
  sd35::cli::register_make_random_checkpoint(app, exit_code);
  sd35::cli::register_generate(app, exit_code);
  try {
    CLI11_PARSE(app, argc, argv);
  } catch (const std::exception& e) {
    // Subcommands report errors as Status; anything escaping is a bug, but the command
    // still exits with a message instead of aborting.
    std::fprintf(stderr, "sd35: internal error: %s\n", e.what());
    return 2;
  }
  return exit_code;
}
