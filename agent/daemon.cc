#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>

#include <cstdarg>
#include <cstdio>

#include <sluice/config.h>
#include <sluice/daemon.h>
#include <sluice/datapath.h>
#include <sluice/agent_metrics.h>
#include <sluice/conntrack.h>
#include <sluice/event_loop.h>
#include <sluice/health.h>
#include <sluice/host_track.h>
#include <sluice/http_server.h>
#include <sluice/metrics.h>

namespace sluice {

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0 && static_cast<size_t>(n) < sizeof(buf) && buf[n - 1] == '\n') buf[n - 1] = '\0';
  switch (level) {
    case LIBBPF_WARN: spdlog::warn("libbpf: {}", buf); break;
    case LIBBPF_INFO: spdlog::debug("libbpf: {}", buf); break;
    default: spdlog::trace("libbpf: {}", buf); break;
  }
  return n;
}

}  // namespace

void route_libbpf_logs() { libbpf_set_print(libbpf_log); }

Status enter_netns(const std::string& name_or_path) {
  std::string path =
      name_or_path.find('/') == std::string::npos ? "/run/netns/" + name_or_path : name_or_path;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open network namespace " + path);
  if (setns(fd.get(), CLONE_NEWNET) != 0) return sys_error("enter network namespace " + path);
  return {};
}

Status ensure_bpffs() {
  struct statfs st {};
  if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == kBpfFsMagic) return {};
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
    return sys_error("mount bpffs at /sys/fs/bpf");
  spdlog::info("mounted bpffs at /sys/fs/bpf");
  return {};
}

int run_daemon(const DaemonOptions& opts) {
  ConfigResult cr = opts.config_path.empty() ? default_config() : load_config_file(opts.config_path);
  if (!cr.config) {
    for (const ConfigError& e : cr.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "sluiced: config rejected (%zu error%s); nothing was changed\n",
                 cr.errors.size(), cr.errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  const Config& cfg = *cr.config;
  if (opts.check_only) {
    std::printf("%s: OK (%zu VIPs)\n",
                opts.config_path.empty() ? "<embedded default>" : opts.config_path.c_str(),
                cfg.vips.size());
    return kExitOk;
  }
  spdlog::set_level(spdlog::level::from_str(opts.log_level.empty() ? cfg.log_level : opts.log_level));
  route_libbpf_logs();

  // Signals are taken through a signalfd on the event loop, never by async handlers.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    spdlog::error("{}", sys_error("block signals").to_string());
    return kExitRuntime;
  }

  auto fail = [](const Error& e) {
    spdlog::error("{}", e.to_string());
    return kExitRuntime;
  };
  if (!opts.netns.empty()) {
    if (auto s = enter_netns(opts.netns); !s) return fail(s.error());
  }
  if (auto s = ensure_bpffs(); !s) return fail(s.error());

  auto loop = EventLoop::create();
  if (!loop) return fail(loop.error());
  EventLoop& ev = **loop;
  // The metrics endpoint binds before anything is attached, so a port in use stops the start
  // with nothing changed. Providers are added as their components come up.
  MetricsRegistry metrics;
  std::unique_ptr<MetricsServer> metrics_server;
  if (!cfg.metrics.listen.empty()) {
    auto addr = parse_listen_address(cfg.metrics.listen);  // validated by parse_config
    if (!addr) return fail(addr.error());
    auto srv = MetricsServer::start(ev, metrics, *addr);
    if (!srv) return fail(srv.error());
    metrics_server = std::move(*srv);
  }

  Limits limits{cfg.max_vips, cfg.max_backends, cfg.conntrack_max_entries};
  auto dp = Datapath::load(limits);
  if (!dp) return fail(dp.error());
  if (auto s = (*dp)->apply(cfg); !s) return fail(s.error());
  if (auto s = (*dp)->attach(cfg.interfaces); !s) return fail(s.error());
  // Host flow tracking (`track:`; none without it): tc_flow on its interfaces, host_flows
  // pinned and expired. Before the data path's pins, so `info` still comes last.
  auto host = start_host_tracking(cfg, opts.pin_dir, ev);
  if (!host) return fail(host.error());
  if (*host) metrics.add("host_flows", host_flow_metrics(*(*host)->expiry()));
  if (auto s = (*dp)->pin(opts.pin_dir); !s) return fail(s.error());
  metrics.add("datapath", datapath_provider((*dp)->fds(), vip_names(cfg)));

  // Health checks take backends out of (and back into) the Maglev selection. The checker
  // logs every flip with its reason.
  auto health = HealthChecker::create(ev);
  if (!health) return fail(health.error());
  HealthChecker& hc = **health;
  hc.on_change([&](uint32_t backend_id, bool up, const std::string&) {
    if (auto s = (*dp)->set_backend_up(backend_id, up); !s)
      spdlog::error("backend {} {}: {}", backend_id, up ? "up" : "down", s.error().to_string());
  });
  hc.set_targets(health_targets(cfg));
  metrics.add("health", health_metrics(hc, backend_labels(cfg)));

  // Conntrack expiry by per-state timeouts, and the data path's transition events.
  ConntrackOptions ct_opts;
  ct_opts.sweep_interval = std::chrono::milliseconds(cfg.conntrack_sweep_interval_ms);
  ConntrackManager conntrack((*dp)->fds(), cfg.conntrack_timeouts, ev, ct_opts);
  if (auto s = conntrack.start(); !s) return fail(s.error());
  metrics.add("conntrack", conntrack_metrics(conntrack));

  spdlog::info("sluiced ready: {} VIPs on {} interfaces, maps pinned under {}{}", cfg.vips.size(),
               cfg.interfaces.size(), opts.pin_dir,
               metrics_server ? ", metrics on http://" +
                                    format_listen_address(metrics_server->local_address()) +
                                    "/metrics"
                              : std::string());

  UniqueFd sfd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sfd.valid()) return fail(sys_error("signalfd"));
  auto on_signal = [&](uint32_t) {
    signalfd_siginfo si{};
    while (read(sfd.get(), &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGHUP) {
        spdlog::warn("SIGHUP: config reload is not implemented yet; running config kept");
        continue;
      }
      spdlog::info("{}: detaching XDP and removing pins", strsignal(si.ssi_signo));
      ev.stop();
    }
  };
  if (auto s = ev.add(sfd.get(), EPOLLIN, on_signal); !s) return fail(s.error());
  // The data path's coarse clock (sl_now_ns) advances on this timer.
  const auto tick = std::chrono::milliseconds(SL_CLOCK_TICK_MS);
  if (!ev.add_timer(tick, tick, [&] { (*dp)->tick(); }))
    return fail(Error{0, "cannot arm the clock timer"});

  if (auto s = ev.run(); !s) return fail(s.error());
  conntrack.stop();
  health->reset();
  metrics_server.reset();
  host->reset();  // its pin first: the data path removes the pin directory
  dp->reset();
  return kExitOk;
}

}  // namespace sluice
