// hvzctl's output: aligned tables and human-readable durations.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hvz::hvzctl {

// Columns separated by two spaces, each as wide as its widest cell; the
// first row is the header. The last column is not padded.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// "42s", "3m12s", "2h03m", "4d02h".
std::string format_duration(std::int64_t seconds);

// Control characters (newlines included) become spaces: error messages and
// table cells stay on one line whatever a server sent.
std::string one_line(const std::string& text);

}  // namespace hvz::hvzctl
