// sluicectl's main: the CLI11 parser built from the command table (commands.h), a check that
// names a mistyped command before CLI11 sees it, and the dispatch to the parsed row's handler.
#include <sluice/bpf/maps.h>
#include <sluice/config/config.h>
#include <sluice/ctl/ctl.h>

#include <cstdio>
#include <string>

#include "commands.h"

namespace sluice {

namespace {

using ctl::Args;
using ctl::Command;

std::string names(std::span<const Command> table, bool only_via_api = false) {
  std::string out;
  for (const Command& c : table) {
    if (only_via_api && !c.via_api) continue;
    out += (out.empty() ? "" : ", ") + std::string(c.name);
  }
  return out;
}

// The options every command takes, before or after it.
void add_global_options(CLI::App& app, Args& a) {
  a.pin_dir = kDefaultPinDir;
  a.api_socket = ApiConfig{}.socket;  // where sluiced listens unless its config says otherwise
  app.add_option("--pin-dir", a.pin_dir, "bpffs directory of the pinned maps")
      ->capture_default_str();
  app.add_option("-o,--output", a.output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--api-socket", a.api_socket,
                 "sluiced's control API socket (" + names(ctl::commands(), true) + ")")
      ->capture_default_str();
}

// One parser per row, one of which must be given; rows with sub-commands get theirs likewise.
void add_commands(CLI::App& parent, std::span<const Command> table, Args& a) {
  parent.require_subcommand(1);
  for (const Command& c : table) {
    CLI::App* cmd = parent.add_subcommand(c.name, c.help);
    // The global options also after the command: `sluicectl conntrack -o json`.
    cmd->fallthrough();
    if (c.options) c.options(*cmd, a);
    if (!c.subs.empty()) add_commands(*cmd, c.subs, a);
  }
}

// The index of the first word from argv[i] on that is neither an option nor the value of a
// global option (so a command word), or argc. Values are skipped by asking the parser which
// options take one: in `--pin-dir /x vips` the command is vips, not /x.
int next_word(const CLI::App& app, int i, int argc, char** argv) {
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (!a.empty() && a[0] != '-') return i;
    const CLI::Option* opt = a.empty() ? nullptr : app.get_option_no_throw(a);
    if (opt && opt->get_items_expected_min() > 0) ++i;
  }
  return argc;
}

const Command* find(std::span<const Command> table, const std::string& name) {
  for (const Command& c : table)
    if (name == c.name) return &c;
  return nullptr;
}

// CLI11 reports a mistyped command as a stray argument ("The following argument was not
// expected"); name it and the valid ones instead. 0, or 2 after the message.
int check_command_words(const CLI::App& app, int argc, char** argv) {
  std::span<const Command> table = ctl::commands();
  const Command* parent = nullptr;
  for (int i = next_word(app, 1, argc, argv); i < argc; i = next_word(app, i + 1, argc, argv)) {
    const Command* c = find(table, argv[i]);
    if (!c) {
      const std::string word = parent ? parent->sub_word : "command";
      const std::string where = parent ? std::string(parent->name) + ": " : "";
      std::fprintf(stderr, "sluicectl: %sunknown %s '%s'; valid %ss: %s\n", where.c_str(),
                   word.c_str(), argv[i], word.c_str(), names(table).c_str());
      return 2;
    }
    if (c->subs.empty()) break;
    parent = c;
    table = c->subs;
  }
  return 0;
}

// The row whose parser ran, at each level down to one with a handler. CLI11 ran exactly one
// at each level (require_subcommand(1)); nullptr only if that ever stopped being so.
const Command* parsed_command(const CLI::App& level, std::span<const Command> table) {
  for (const Command& c : table) {
    const CLI::App* cmd = level.get_subcommand(c.name);
    if (cmd->parsed()) return c.subs.empty() ? &c : parsed_command(*cmd, c.subs);
  }
  return nullptr;
}

}  // namespace

int ctl_main(int argc, char** argv) {
  Args args;
  CLI::App app{"sluicectl: inspect the sluice data path (reads the pinned maps)"};
  add_global_options(app, args);
  add_commands(app, ctl::commands(), args);
  if (int rc = check_command_words(app, argc, argv); rc != 0) return rc;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every other parse error is a bad argument (exit 2, as documented).
    return app.exit(e) == 0 ? 0 : 2;
  }
  const Command* cmd = parsed_command(app, ctl::commands());
  return cmd ? cmd->run(args, *cmd) : 2;
}

}  // namespace sluice
