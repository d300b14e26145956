// Subcommands of the sd35 command. Each registers itself on the app and stores its exit
// code in `exit_code` when it runs (CLI11 callbacks cannot return one).
#pragma once

namespace CLI {
class App;
}

namespace sd35::cli {

void register_inspect(CLI::App& app, int& exit_code);
void register_golden(CLI::App& app, int& exit_code);
void register_make_random_checkpoint(CLI::App& app, int& exit_code);
void register_generate(CLI::App& app, int& exit_code);

}  // namespace sd35::cli
