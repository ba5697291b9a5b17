// hvz: the composition root — parse the command line, then run (see
// options.hpp for the flags, run.hpp for the run and its exit status).
#include <cstdio>
#include <variant>

#include "api/hvz/options.hpp"
#include "api/hvz/run.hpp"

int main(int argc, char** argv) {
  auto parsed = hvz::api::parse_options(argc, argv);
  if (const auto* exit = std::get_if<hvz::api::OptionsExit>(&parsed)) {
    std::fputs(exit->text.c_str(), exit->status == hvz::api::kExitOk ? stdout : stderr);
    return exit->status;
  }
  return hvz::api::run(std::get<hvz::api::Options>(parsed));
}
