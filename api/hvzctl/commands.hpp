// hvzctl's subcommands. Each prints its result on stdout and returns an
// error (one line, without the "hvzctl: error: " prefix) on failure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::hvzctl {

struct GlobalOptions {
  std::string runtime_dir;  // empty: default_runtime_dir()
};

struct RunOptions {
  std::string name;
  std::string config_file;
  std::string kernel, initrd, cmdline;
  bool has_cmdline = false;
  std::uint32_t vcpus = 1;
  std::uint32_t memory_mib = 128;
  std::vector<std::string> drives;  // PATH[,ro][,root][,id=ID]
  bool no_start = false;
  std::string hvz;      // empty: hvz next to this executable
  double timeout = 30;  // seconds for hvz's API to answer
  bool json = false;
};

struct StopOptions {
  double timeout = 10;  // seconds for the guest to shut down after Ctrl-Alt-Del
};

Expected<void> cmd_run(const GlobalOptions& g, const RunOptions& o);
Expected<void> cmd_start(const GlobalOptions& g, const std::string& vm);
Expected<void> cmd_pause(const GlobalOptions& g, const std::string& vm);
Expected<void> cmd_resume(const GlobalOptions& g, const std::string& vm);
Expected<void> cmd_stop(const GlobalOptions& g, const std::string& vm, const StopOptions& o);
Expected<void> cmd_status(const GlobalOptions& g, const std::string& vm, bool json);
Expected<void> cmd_config(const GlobalOptions& g, const std::string& vm);
Expected<void> cmd_ls(const GlobalOptions& g, bool json, bool prune);
Expected<void> cmd_rm(const GlobalOptions& g, const std::vector<std::string>& names, bool force);

}  // namespace hvz::hvzctl
