// sluiced --check (daemon.h, check_config): the config is valid by then; with --netns, what a
// start in that namespace would also need of the host is checked, so that --check says
// everything a start would refuse for.
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <sluice/core/fd.h>
#include <sluice/daemon/daemon.h>

namespace sluice {

namespace {

// The interfaces a start resolves in its namespace: `interfaces` (with their lines) and
// `track.interfaces`. "FILE:LINE: FIELD: message" for each one missing.
std::vector<std::string> missing_interfaces(const Config& cfg, const std::string& file,
                                            const std::string& netns) {
  std::vector<std::string> errors;
  auto missing = [&](const std::string& where, const std::string& name) {
    errors.push_back(where + ": interface '" + name + "' not found in network namespace " + netns +
                     " (a start there would fail; create it, or fix the name)");
  };
  for (size_t i = 0; i < cfg.interface_configs.size(); ++i) {
    const InterfaceConfig& ic = cfg.interface_configs[i];
    if (if_nametoindex(ic.name.c_str()) == 0)
      missing(file + ":" + std::to_string(ic.line) + ": interfaces[" + std::to_string(i) + "]",
              ic.name);
  }
  for (size_t i = 0; i < cfg.track.interfaces.size(); ++i)
    if (if_nametoindex(cfg.track.interfaces[i].c_str()) == 0)
      missing(file + ": track.interfaces[" + std::to_string(i) + "]", cfg.track.interfaces[i]);
  return errors;
}

}  // namespace

int check_config(const Config& cfg, const DaemonOptions& opts) {
  const std::string file = opts.config_path.empty() ? "<embedded default>" : opts.config_path;
  std::vector<std::string> errors;
  if (!opts.netns.empty()) {
    // This process only checks and exits: entering the namespace changes nothing outside it.
    if (auto s = enter_netns(opts.netns); !s)
      errors.push_back("--netns " + opts.netns + ": " + s.error().to_string() +
                       " (ip netns list shows the names; a path must be a netns file)");
    else
      errors = missing_interfaces(cfg, file, opts.netns);
  }
  for (const std::string& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
  if (!errors.empty()) {
    std::fprintf(stderr, "sluiced: %s would not start here (%zu problem%s)\n", file.c_str(),
                 errors.size(), errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  std::printf("%s: OK (%zu VIPs)\n", file.c_str(), cfg.vips.size());
  return kExitOk;
}

}  // namespace sluice
