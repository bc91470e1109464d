// The command line of the traffic tools (sl-echo, sl-probe, sl-spoof): one option loop and one
// number parser, so the three answer --help, an unknown option and a bad value alike. libc
// only, like the tools.
#pragma once

#include <getopt.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace sl_tool {

// `s` as a whole number in lo..hi: digits only (no sign, no blanks), in `base` (0: as C writes
// it, 0x1f or 017 too).
template <class T>
bool parse_number(const char* s, std::type_identity_t<T> lo, std::type_identity_t<T> hi, T& out,
                  int base = 10) {
  if (!isdigit(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = strtoull(s, &end, base);
  if (errno != 0 || *end != '\0' || v < static_cast<unsigned long long>(lo) ||
      v > static_cast<unsigned long long>(hi)) {
    return false;
  }
  out = static_cast<T>(v);
  return true;
}

// item(token) for each comma-separated token of `list`, an empty one too; false as soon as
// item refuses one.
template <class OnItem>
bool for_each_item(const std::string& list, OnItem item) {
  for (size_t at = 0;;) {
    const size_t comma = list.find(',', at);
    if (!item(list.substr(at, comma == std::string::npos ? std::string::npos : comma - at)))
      return false;
    if (comma == std::string::npos) return true;
    at = comma + 1;
  }
}

// getopt_long over `argv` (long options only): on_option(c, optarg) takes each option but
// --help ('h') and returns false for a bad value. Returns the exit code when the tool is to
// stop: 0 after --help (usage on stdout), 2 after an unknown option (usage on stderr) or a bad
// value ("TOOL: bad value 'V'"); -1 when every option was taken.
template <class OnOption>
int parse_options(int argc, char** argv, const option* opts, const char* tool, void (*usage)(FILE*),
                  OnOption on_option) {
  for (int c; (c = getopt_long(argc, argv, "", opts, nullptr)) != -1;) {
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    if (c == '?') {
      usage(stderr);
      return 2;
    }
    if (!on_option(c, optarg)) {
      fprintf(stderr, "%s: bad value '%s'\n", tool, optarg);
      return 2;
    }
  }
  return -1;
}

}  // namespace sl_tool
