// sluicectl's commands as one table, in the style of xdp-tools' cmds[]: each command's name,
// one-line help, options and handler exist here and nowhere else. ctl_main (ctl.cc) builds the
// CLI11 parser, the "unknown command" message and the dispatch from the table, so adding a
// command is adding a row.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace sluice::ctl {

// What the command line said, filled in by CLI11 through the options the table registers.
struct Args {
  // Global options: before the command or after it (`sluicectl conntrack -o json`).
  std::string pin_dir;
  std::string output = "text";  // text or json
  std::string api_socket;
  bool json() const { return output == "json"; }

  // `conntrack`: the filters as typed, checked by its handler (parse_conntrack_filter).
  struct Conntrack {
    std::string state, vip, backend, older_than, timeouts_from;
    bool host = false;
    bool summary = false;
  } conntrack;

  // `cc`: the filters as typed, checked by its handler (parse_cc_filter).
  struct Cc {
    std::string rule, dst, cc;
    std::string watch;  // SECONDS; empty: no --watch (a bare --watch gives its default)
    bool rules = false;
  } cc;

  // `backend ACTION VIP BACKEND [WEIGHT]`.
  struct Backend {
    std::string vip, addr;
    uint32_t weight = 1;
  } backend;
};

struct Command {
  const char* name;
  const char* help;  // one line, shown by --help
  // Registers the command's own options on its parser; nullptr: it has none.
  void (*options)(CLI::App& cmd, Args& args);
  // Runs the parsed command; returns the exit code. `self` is this row, so that one handler
  // can serve several rows (the backend actions). nullptr for a command that only groups
  // sub-commands.
  int (*run)(const Args& args, const Command& self);
  // Talks to the running sluiced (--api-socket) rather than reading the pins.
  bool via_api = false;
  // A command that takes a sub-command names it in messages with this word ("action") and
  // lists them here.
  const char* sub_word = nullptr;
  std::span<const Command> subs = {};
};

// The top-level commands, in the order --help lists them.
std::span<const Command> commands();

}  // namespace sluice::ctl
