// Per-vCPU CPUID: KVM's supported leaves adjusted for hvz's topology (one
// thread per core, all vCPUs in one package), APIC ids and the hypervisor
// bit.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace hvz::x86_64 {

std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::vector<kvm_cpuid_entry2> supported,
                                         std::uint32_t vcpu_id, std::uint32_t vcpu_count);

}  // namespace hvz::x86_64
