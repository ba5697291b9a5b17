// hvzctl's runtime directory and the hvz processes it starts.
//
// The runtime directory ($HVZ_RUNTIME_DIR, else $XDG_RUNTIME_DIR/hvz, else
// /run/hvz for root, else /tmp/hvz-$UID) holds one subdirectory per VM name:
//   api.sock      hvz's API socket
//   pid           hvz's pid
//   console.log   hvz's stdout and stderr (the guest's serial console)
//   meta.json     name, pid, socket, start time, hvz's command line
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/core/error.hpp"

namespace hvz::hvzctl {

// The runtime directory from the environment (not created).
std::string default_runtime_dir();
// mkdir -p with mode 0700 for what it creates; the last directory must be
// the caller's own.
Expected<void> make_dirs(const std::string& path);

// VM names: 1-64 letters, digits and '_', starting with a letter or digit
// (they become hvz --id, which takes 1-64 of A-Z, a-z, 0-9 and '_').
bool valid_name(std::string_view name);
std::string name_rules();

struct EntryPaths {
  std::string dir, socket, pid, console_log, meta;
};
EntryPaths entry_paths(const std::string& runtime_dir, const std::string& name);

struct Meta {
  std::string name;
  pid_t pid = 0;                      // 0: hvz not started yet
  std::uint64_t pid_start_ticks = 0;  // /proc/PID/stat starttime: guards against pid reuse
  std::string socket;
  std::string console_log;
  std::int64_t start_time_unix = 0;
  std::vector<std::string> command;
};

Expected<Meta> read_meta(const std::string& path);
// Written to a temporary file and renamed: readers never see half of it.
Expected<void> write_meta(const Meta& meta, const std::string& path);
Expected<void> write_text_file(const std::string& path, const std::string& text);
Expected<std::string> read_text_file(const std::string& path,
                                     std::size_t max_bytes = std::size_t{1} << 20);

// The last `lines` non-empty lines of a (log) file, joined with " | ";
// empty when the file is missing or empty.
std::string tail_lines(const std::string& path, std::size_t lines);

// /proc/PID/stat's starttime, or nullopt when there is no such process (or
// it is a zombie: it has exited, only its parent has not reaped it).
std::optional<std::uint64_t> process_start_ticks(pid_t pid);
// The process runs and is the one started (when start_ticks != 0).
bool process_alive(pid_t pid, std::uint64_t start_ticks);
// Polls until the process is gone or `timeout` passed; true when gone.
bool wait_process_gone(pid_t pid, std::uint64_t start_ticks, std::chrono::milliseconds timeout);
// SIGTERM, then SIGKILL after `grace`; true when the process is gone.
bool terminate_process(pid_t pid, std::uint64_t start_ticks, std::chrono::milliseconds grace);

// Starts argv[0] (a path) in a new session: stdin /dev/null, stdout and
// stderr appended to `log_path`, same working directory. Fails when exec
// fails (the child reports errno through a close-on-exec pipe).
Expected<pid_t> spawn_detached(const std::vector<std::string>& argv, const std::string& log_path);

// The directory holding this executable (/proc/self/exe).
Expected<std::string> self_dir();

// Removes a VM's runtime entry (its directory and what is in it).
Expected<void> remove_entry(const std::string& dir);

}  // namespace hvz::hvzctl
