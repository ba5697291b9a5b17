// Real validation: ACPICA's iasl disassembles the tables hvz writes. A
// table iasl cannot parse, or parses with errors, would not parse in Linux
// either (both use ACPICA).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "vmm/x86_64/acpi/tables.hpp"
#include "vmm/x86_64/acpi/tests/table_reader.hpp"

namespace hvz::x86_64::acpi {
namespace {

namespace fs = std::filesystem;
using testing::Bytes;

struct CommandResult {
  int status = -1;
  std::string output;
};

// Runs `command` under /bin/sh with stderr folded into stdout.
CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  std::size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "hvz-acpi-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << p;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool have_iasl() {
  return run("command -v iasl").status == 0;
}

// Disassembles `name`.dat in `dir`; returns the .dsl text.
std::string disassemble(const fs::path& dir, const std::string& name) {
  const CommandResult r = run("cd '" + dir.string() + "' && iasl -d " + name + ".dat");
  EXPECT_EQ(r.status, 0) << name << ":\n" << r.output;
  EXPECT_EQ(r.output.find("Error"), std::string::npos) << name << ":\n" << r.output;
  EXPECT_EQ(r.output.find("Warning"), std::string::npos) << name << ":\n" << r.output;
  const std::string dsl = read_file(dir / (name + ".dsl"));
  EXPECT_FALSE(dsl.empty()) << name << ": no disassembly written\n" << r.output;
  return dsl;
}

// Recompiles a disassembled .dsl: iasl must report zero errors.
void recompile(const fs::path& dir, const std::string& name) {
  const CommandResult r =
      run("cd '" + dir.string() + "' && iasl -p " + name + "-re " + name + ".dsl");
  EXPECT_EQ(r.status, 0) << name << ":\n" << r.output;
  EXPECT_NE(r.output.find("Compilation successful. 0 Errors,"), std::string::npos) << name << ":\n"
                                                                                   << r.output;
}

TEST(AcpiIasl, DisassemblesEveryTableWithoutErrors) {
  ASSERT_TRUE(have_iasl()) << "iasl (Debian package acpica-tools) is not installed: run "
                              "scripts/install-deps";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty()) << "mkdtemp failed";

  auto mem = testing::acpi_memory();
  AcpiConfig config{2,
                    {{kVirtioMmioStart, kVirtioMmioSize, 5},
                     {kVirtioMmioStart + kVirtioMmioSize, kVirtioMmioSize, 6}}};
  auto w = write_acpi_tables(mem, config);
  ASSERT_TRUE(w) << w.error().message();
  const testing::GuestTables t = testing::follow_pointers(mem);
  ASSERT_FALSE(t.dsdt.empty());
  write_file(dir.path() / "dsdt.dat", t.dsdt);
  write_file(dir.path() / "facp.dat", t.fadt);
  write_file(dir.path() / "apic.dat", t.madt);
  write_file(dir.path() / "xsdt.dat", t.xsdt);

  const std::string dsdt = disassemble(dir.path(), "dsdt");
  for (const char* want :
       {"PNP0501", "PNP0B00", "Device (RTC)", "LNRO0005", "_S5_", "Device (COM1)", "Device (V000)",
        "Device (V001)", "0x03F8", "0xD0000000", "0xD0001000", "Return (0x0F)",
        "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"}) {
    EXPECT_NE(dsdt.find(want), std::string::npos) << want << " missing in:\n" << dsdt;
  }
  recompile(dir.path(), "dsdt");

  // The RSDP has no standard table header, which iasl -d requires; the
  // unit tests check it field by field.
  // Each data table, and what iasl decodes from it: runs of text that must
  // appear in this order.
  using Run = std::vector<std::string>;
  const std::vector<std::pair<std::string, std::vector<Run>>> tables{
      {"facp",
       {{"Boot Flags", "VGA Not Present (V4) : 1", "MSI Not Supported (V4) : 1",
         "CMOS RTC Not Present (V5) : 0"},
        {"Reset Register Supported (V2) : 1"},
        {"Hardware Reduced (V5) : 1"},
        {"Reset Register :", "Space ID : 01 [SystemIO]", "Bit Width : 08",
         "Encoded Access Width : 01", "Address : 0000000000000602", "Value to cause reset : 01"},
        {"FADT Minor Revision : 05"},
        {"Sleep Control Register :", "Space ID : 01 [SystemIO]", "Bit Width : 08",
         "Encoded Access Width : 01", "Address : 0000000000000600",
         "Sleep Status Register :", "Space ID : 01 [SystemIO]", "Bit Width : 08",
         "Encoded Access Width : 01", "Address : 0000000000000601"}}},
      {"apic",
       {{"Local Apic Address : FEE00000", "PC-AT Compatibility : 0"},
        {"Processor ID : 00", "Local Apic ID : 00", "Processor Enabled : 1"},
        {"Processor ID : 01", "Local Apic ID : 01", "Processor Enabled : 1"},
        {"[I/O APIC]", "I/O Apic ID : 00", "Address : FEC00000", "Interrupt : 00000000"}}},
      {"xsdt", {{"ACPI Table Address   0 :", "ACPI Table Address   1 :"}}},
  };
  for (const auto& [name, runs] : tables) {
    const std::string dsl = disassemble(dir.path(), name);
    EXPECT_EQ(dsl.find("Incorrect"), std::string::npos) << name << ":\n" << dsl;
    EXPECT_EQ(dsl.find("****"), std::string::npos) << name << ":\n" << dsl;
    for (const auto& run : runs) {
      std::size_t pos = 0;
      for (const auto& piece : run) {
        pos = dsl.find(piece, pos);
        if (pos == std::string::npos) {
          ADD_FAILURE() << name << ": \"" << piece << "\" missing (in order) in:\n" << dsl;
          break;
        }
        pos += piece.size();
      }
    }
    recompile(dir.path(), name);
  }
}

}  // namespace
}  // namespace hvz::x86_64::acpi
