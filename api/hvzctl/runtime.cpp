// hvzctl's runtime directory, meta.json and process handling.
#include "api/hvzctl/runtime.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "vmm/core/unique_fd.hpp"

namespace hvz::hvzctl {
namespace {

using json = nlohmann::json;

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace

std::string default_runtime_dir() {
  if (auto dir = env_or_empty("HVZ_RUNTIME_DIR"); !dir.empty()) return dir;
  if (auto xdg = env_or_empty("XDG_RUNTIME_DIR"); !xdg.empty()) return xdg + "/hvz";
  if (::geteuid() == 0) return "/run/hvz";
  return "/tmp/hvz-" + std::to_string(::getuid());
}

Expected<void> make_dirs(const std::string& path) {
  if (path.empty()) return make_error(Errc::kInvalidArgument, "empty directory path");
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return sys_error("cannot create directory " + partial);
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return sys_error("cannot create directory " + path);
  if (!S_ISDIR(st.st_mode)) {
    return make_error(Errc::kInvalidArgument, path + " exists and is not a directory");
  }
  // Another user's directory (say a planted /tmp/hvz-UID) is not ours to use.
  if (st.st_uid != ::geteuid()) {
    return make_error(Errc::kInvalidArgument,
                      path + " belongs to uid " + std::to_string(st.st_uid) + ", not to you");
  }
  return {};
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '_') return false;
  }
  return true;
}

std::string name_rules() {
  return "1-64 letters, digits and '_', starting with a letter or digit";
}

EntryPaths entry_paths(const std::string& runtime_dir, const std::string& name) {
  EntryPaths p;
  p.dir = runtime_dir + "/" + name;
  p.socket = p.dir + "/api.sock";
  p.pid = p.dir + "/pid";
  p.console_log = p.dir + "/console.log";
  p.meta = p.dir + "/meta.json";
  return p;
}

Expected<std::string> read_text_file(const std::string& path, std::size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("cannot read " + path);
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("cannot read " + path);
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_bytes) {
      return make_error(Errc::kOutOfRange,
                        path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

Expected<void> write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return sys_error("cannot write " + tmp);
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error("cannot write " + tmp);
      }
      done += static_cast<std::size_t>(n);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("cannot rename " + tmp);
  return {};
}

Expected<Meta> read_meta(const std::string& path) {
  auto text = read_text_file(path);
  if (!text) return tl::unexpected(text.error());
  const json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(Errc::kInvalidArgument, path + ": not a JSON object");
  }
  Meta m;
  try {
    m.name = j.at("name").get<std::string>();
    m.pid = j.at("pid").get<pid_t>();
    m.pid_start_ticks = j.value("pid_start_ticks", std::uint64_t{0});
    m.socket = j.at("socket").get<std::string>();
    m.console_log = j.value("console_log", std::string());
    m.start_time_unix = j.value("start_time_unix", std::int64_t{0});
    m.command = j.value("command", std::vector<std::string>{});
  } catch (const json::exception& e) {
    return make_error(Errc::kInvalidArgument, path + ": " + e.what());
  }
  if (m.pid < 0) return make_error(Errc::kInvalidArgument, path + ": negative pid");
  return m;
}

Expected<void> write_meta(const Meta& m, const std::string& path) {
  char iso[32] = "";
  const std::time_t t = static_cast<std::time_t>(m.start_time_unix);
  std::tm tm{};
  if (::gmtime_r(&t, &tm)) std::strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
  const json j = {
      {"name", m.name},
      {"pid", m.pid},
      {"pid_start_ticks", m.pid_start_ticks},
      {"socket", m.socket},
      {"console_log", m.console_log},
      {"start_time", iso},
      {"start_time_unix", m.start_time_unix},
      {"command", m.command},
  };
  return write_text_file(path, j.dump(2) + "\n");
}

std::string tail_lines(const std::string& path, std::size_t lines) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  // The last 4 KiB are plenty for a few lines.
  const off_t end = ::lseek(fd.get(), 0, SEEK_END);
  if (end <= 0) return {};
  const off_t start = end > 4096 ? end - 4096 : 0;
  std::string text(static_cast<std::size_t>(end - start), '\0');
  const ssize_t n = ::pread(fd.get(), text.data(), text.size(), start);
  if (n <= 0) return {};
  text.resize(static_cast<std::size_t>(n));
  std::vector<std::string> all;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::string clean;
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 && u != 0x7f) clean += c;
    }
    if (clean.find_first_not_of(' ') != std::string::npos) all.push_back(clean);
  }
  if (start > 0 && !all.empty()) all.erase(all.begin());  // probably cut
  std::string out;
  const std::size_t first = all.size() > lines ? all.size() - lines : 0;
  for (std::size_t i = first; i < all.size(); ++i) {
    if (!out.empty()) out += " | ";
    out += all[i];
  }
  return out;
}

std::optional<std::uint64_t> process_start_ticks(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto text = read_text_file("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!text) return std::nullopt;
  // "PID (COMM) STATE PPID ..." — COMM may hold spaces and parentheses.
  const auto close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(text->substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  // fields[0] is field 3 (state); starttime is field 22.
  if (fields.size() < 20) return std::nullopt;
  if (fields[0] == "Z" || fields[0] == "X" || fields[0] == "x") return std::nullopt;
  try {
    return std::stoull(fields[19]);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool process_alive(pid_t pid, std::uint64_t start_ticks) {
  const auto ticks = process_start_ticks(pid);
  if (!ticks) return false;
  return start_ticks == 0 || *ticks == start_ticks;
}

bool wait_process_gone(pid_t pid, std::uint64_t start_ticks, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Reap it if it is our child (hvzctl run's clean-up); harmless otherwise.
    ::waitpid(pid, nullptr, WNOHANG);
    if (!process_alive(pid, start_ticks)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool terminate_process(pid_t pid, std::uint64_t start_ticks, std::chrono::milliseconds grace) {
  if (!process_alive(pid, start_ticks)) return true;
  ::kill(pid, SIGTERM);
  if (wait_process_gone(pid, start_ticks, grace)) return true;
  ::kill(pid, SIGKILL);
  return wait_process_gone(pid, start_ticks, std::chrono::seconds(10));
}

Expected<pid_t> spawn_detached(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return make_error(Errc::kInvalidArgument, "empty command");
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);

  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return sys_error("cannot open /dev/null");
  UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log_fd) return sys_error("cannot open " + log_path);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return sys_error("pipe2");
  UniqueFd err_read(pipe_fds[0]);
  UniqueFd err_write(pipe_fds[1]);

  const pid_t pid = ::fork();
  if (pid < 0) return sys_error("fork");
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    int err = 0;
    if (::setsid() < 0 || ::dup2(null_fd.get(), 0) < 0 || ::dup2(log_fd.get(), 1) < 0 ||
        ::dup2(log_fd.get(), 2) < 0) {
      err = errno;
    } else {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::execv(cargs[0], cargs.data());
      err = errno;
    }
    [[maybe_unused]] const ssize_t ignored = ::write(err_write.get(), &err, sizeof(err));
    ::_exit(127);
  }
  err_write.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    ::waitpid(pid, nullptr, 0);
    return make_error(Errc::kSystem, "cannot run " + argv[0], child_errno);
  }
  return pid;
}

Expected<std::string> self_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return make_error(Errc::kSystem, "cannot read /proc/self/exe", ec.value());
  return exe.parent_path().string();
}

Expected<void> remove_entry(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return make_error(Errc::kSystem, "cannot remove " + dir, ec.value());
  return {};
}

}  // namespace hvz::hvzctl
