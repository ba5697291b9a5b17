// run() and exit_status() (see run.hpp).
#include "api/hvz/run.hpp"

#include <signal.h>
#include <sys/signalfd.h>

#include <cstdio>
#include <memory>

#include "api/controller.hpp"
#include "api/http_server.hpp"
#include "api/vm_backend.hpp"
#include "vmm/core/log.hpp"
#include "vmm/terminal.hpp"
#include "vmm/vm.hpp"
#include "vmm/vm_resources.hpp"
#include "vmm/vmm_loop.hpp"

namespace hvz::api {
namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "hvz: error: %s\n", message.c_str());
  return kExitUsage;
}

// SIGTERM, SIGINT and SIGHUP arrive on a signalfd (blocked in every
// thread), so stopping is an ordinary event of the VMM loop; so does
// SIGUSR1, which logs the VM's state (vCPU registers) for stall diagnosis.
UniqueFd block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

}  // namespace

int exit_status(const Expected<vmm::RunOutcome>& outcome) {
  using vmm::StopReason;
  if (!outcome) {
    std::fprintf(stderr, "hvz: error: %s\n", outcome.error().message().c_str());
    return kExitGuestFailure;
  }
  switch (outcome->reason) {
    case StopReason::kPowerOff:
    case StopReason::kReset:
      LOG_INFO("%s", outcome->detail.c_str());
      return kExitOk;
    case StopReason::kSignal:
      return 128 + outcome->signal;
    case StopReason::kGuestCrash:
    case StopReason::kError:
      std::fprintf(stderr, "hvz: %s\n", outcome->detail.c_str());
      return kExitGuestFailure;
  }
  return kExitGuestFailure;
}

int run(const Options& options) {
  log::set_thread_name("main");
  log::set_level(options.log_level);

  auto signals = block_stop_signals();
  if (!signals) return fail("signalfd failed");

  // The one configuration; the API thread changes it before boot, the VMM
  // loop (this thread) builds the VM from it.
  vmm::VmResources resources(options.config);
  auto backend = VmBackend::create();
  if (!backend) return fail(backend.error().message());
  const config::VmConfig& config = options.config;
  if (config.logger) {
    if (auto r = (*backend)->configure_logger(*config.logger); !r) {
      return fail("logger: " + r.error().message());
    }
  }
  if (config.metrics) {
    if (auto r = (*backend)->configure_metrics(*config.metrics); !r) {
      return fail("metrics: " + r.error().message());
    }
  }
  vmm::ConsoleIo io;
  io.output_limit = options.output_limit;
  vmm::VmmLoop loop((*backend)->actions(), resources,
                    [io](const config::VmConfig& c) -> Expected<std::unique_ptr<vmm::VmRuntime>> {
                      auto vm = vmm::Vm::create(c, io);
                      if (!vm) return tl::unexpected(vm.error());
                      return std::unique_ptr<vmm::VmRuntime>(std::move(*vm));
                    },
                    signals.get());

  Controller controller(**backend, {options.instance_id}, resources);
  std::unique_ptr<HttpServer> server;
  if (!options.api_sock.empty()) {
    HttpServerOptions server_options;
    server_options.socket_path = options.api_sock;
    server_options.max_body_bytes = options.max_payload;
    auto started = HttpServer::start(
        server_options, [&controller](const HttpRequest& r) { return controller.handle(r); });
    if (!started) return fail("API socket " + options.api_sock + ": " + started.error().message());
    server = std::move(*started);
    LOG_INFO("API listening on %s", options.api_sock.c_str());
  }
  if (options.boot_now) {
    // The API may only see the VM started (post-boot rules) once it is.
    if (auto r = loop.start(config); !r) {
      // Before the server goes: a request waiting on the loop gets its
      // answer, so the HTTP thread can be joined.
      (*backend)->actions().close("hvz failed to start the microVM");
      return fail(r.error().message());
    }
    controller.mark_started();
  }

  vmm::RawTerminal raw(0);
  // Until the VM stops (or a stop signal): the loop answers the API's
  // actions, then refuses any later one.
  const int status = exit_status(loop.run());
  server.reset();  // no API calls past this point; the socket is removed
  return status;
}

}  // namespace hvz::api
