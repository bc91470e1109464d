// sluiced as a library: everything main() does, callable from tests.
#pragma once

#include <sluice/bpf/maps.h>
#include <sluice/config/config.h>
#include <sluice/core/result.h>

#include <string>

namespace sluice {

struct DaemonOptions {
  std::string config_path;  // empty: the embedded default config
  std::string netns;        // empty: stay; a name (/run/netns/NAME) or a path to a netns file
  std::string pin_dir = kDefaultPinDir;
  std::string log_level;    // empty: the config's log_level
  bool check_only = false;  // validate the config and exit
  // On SIGTERM/SIGINT: detach XDP and remove the pins. Default: leave the data path running
  // for the next sluiced to adopt (hitless restart).
  bool detach_on_exit = false;
  // Overrides the config's api.socket (empty: the config's).
  std::string api_socket;
};

// Exit codes of sluiced.
enum ExitCode : int { kExitOk = 0, kExitRuntime = 1, kExitConfig = 2 };

// Runs until SIGTERM/SIGINT. Returns an ExitCode.
int run_daemon(const DaemonOptions& opts);
// `sluiced --check` of a config that parsed and validated: prints OK, or with --netns first
// checks what a start there would need of the host (the namespace exists, it holds every
// interface the config names) and prints each problem. kExitOk or kExitConfig.
int check_config(const Config& cfg, const DaemonOptions& opts);

// Moves the calling thread into a network namespace (by name under /run/netns, or a path).
Status enter_netns(const std::string& name_or_path);
// Mounts bpffs at /sys/fs/bpf when nothing is mounted there.
Status ensure_bpffs();
// Routes libbpf's messages through spdlog (its debug output demoted to trace).
void route_libbpf_logs();

}  // namespace sluice
