// run(): hvz after its command line — stop signals on a signalfd, the
// logger and metrics of the config, the API server (HTTP thread: Controller
// on a VmBackend that posts actions) and the VMM loop on this (the main)
// thread, which owns the VM; then the exit status. Teardown is ordered:
// the VMM loop refuses further actions, the VM stops, then the API server.
#pragma once

#include "api/hvz/options.hpp"
#include "vmm/core/error.hpp"
#include "vmm/vm_control.hpp"

namespace hvz::api {

// How a run's end maps to hvz's exit status: 0 the guest powered off or
// rebooted, 1 it crashed or hvz failed while running, 128+N signal N.
// Reports the outcome (log or stderr) as it maps it.
int exit_status(const Expected<vmm::RunOutcome>& outcome);

int run(const Options& options);

}  // namespace hvz::api
