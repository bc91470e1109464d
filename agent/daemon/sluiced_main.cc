// sluiced: the sluice agent. Only its flags are read here; everything else is run_daemon()'s
// (agent/daemon/daemon.cc), the main stays thin (docs/design.md, "Code map").
#include <sluice/daemon/daemon.h>
#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  sluice::DaemonOptions opts;
  CLI::App app{"sluiced: XDP L4 load balancer agent"};
  app.add_option("-c,--config", opts.config_path,
                 "YAML config file (default: the embedded demo config)");
  app.add_option("--netns", opts.netns,
                 "network namespace to run in: a name under /run/netns or a path");
  app.add_option("--pin-dir", opts.pin_dir, "bpffs directory for the pinned maps")
      ->capture_default_str();
  app.add_option("--log-level", opts.log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--api-socket", opts.api_socket,
                 "control API socket, overriding the config's api.socket");
  app.add_flag("--detach-on-exit", opts.detach_on_exit,
               "on SIGTERM/SIGINT detach XDP and remove the pins (default: leave the data path "
               "running for the next sluiced to take over)");
  app.add_flag("--check", opts.check_only, "validate the config and exit (0 = valid, 2 = invalid)");
  CLI11_PARSE(app, argc, argv);
  return sluice::run_daemon(opts);
}
