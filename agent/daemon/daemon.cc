// sluiced's body (daemon.h): the start in the order docs/design.md ("Agent") gives, reload,
// the control API's handlers and the stop. This is the one place that wires every component
// to the one event loop; the components know nothing of each other.

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <arpa/inet.h>
#include <nlohmann/json.hpp>

#include <sluice/api/api_server.h>
#include <sluice/bpf/datapath.h>
#include <sluice/cc/cc_metrics.h>
#include <sluice/cc/congestion.h>
#include <sluice/config/backend_change.h>
#include <sluice/config/config.h>
#include <sluice/conntrack/conntrack.h>
#include <sluice/conntrack/host_track.h>
#include <sluice/core/event_loop.h>
#include <sluice/core/net.h>
#include <sluice/daemon/agent_metrics.h>
#include <sluice/daemon/daemon.h>
#include <sluice/health/health.h>
#include <sluice/http/http_server.h>
#include <sluice/metrics/metrics.h>

namespace sluice {

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

// libbpf prints to stderr on its own; through spdlog its lines follow the agent's level and
// format. Its trailing newline goes: spdlog adds one.
int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0 && static_cast<size_t>(n) < sizeof(buf) && buf[n - 1] == '\n') buf[n - 1] = '\0';
  switch (level) {
    case LIBBPF_WARN:
      spdlog::warn("libbpf: {}", buf);
      break;
    case LIBBPF_INFO:
      spdlog::debug("libbpf: {}", buf);
      break;
    default:
      spdlog::trace("libbpf: {}", buf);
      break;
  }
  return n;
}

}  // namespace

void route_libbpf_logs() { libbpf_set_print(libbpf_log); }

Status enter_netns(const std::string& name_or_path) {
  // A bare name is one `ip netns add` made: those are mounted under /run/netns.
  std::string path =
      name_or_path.find('/') == std::string::npos ? "/run/netns/" + name_or_path : name_or_path;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open network namespace " + path);
  if (setns(fd.get(), CLONE_NEWNET) != 0) return sys_error("enter network namespace " + path);
  return {};
}

Status ensure_bpffs() {
  struct statfs st {};
  // Pins need bpffs at /sys/fs/bpf, which not every host mounts.
  if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == kBpfFsMagic) return {};
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
    return sys_error("mount bpffs at /sys/fs/bpf");
  spdlog::info("mounted bpffs at /sys/fs/bpf");
  return {};
}

namespace {

using nlohmann::json;

std::string vip_key(const VipConfig& v) { return format_endpoint(vip_endpoint(v)); }

// The running agent: everything run_daemon() starts, and what reload and the API change.
class Daemon {
 public:
  explicit Daemon(const DaemonOptions& opts) : opts_(opts) {}
  int run(Config cfg);

 private:
  Status start(const Config& cfg);
  // Applies `cfg` to every component. The data path first: it checks capacity before it
  // writes anything, so an error there leaves the running config in force.
  Result<ApplySummary> apply(const Config& cfg);
  Status apply_congestion(const CongestionConfig& cfg);
  void sync_health();
  json reload();
  std::vector<std::string> unchangeable(const Config& cfg) const;
  Status move_metrics(const std::string& listen);
  void restore_metrics(const std::string& listen);
  json handle(const json& req);
  json handle_backend(const json& req);
  json list_vips() const;
  json status() const;
  std::string on_request(const std::string& line);

  DaemonOptions opts_;
  Config running_;
  std::unique_ptr<EventLoop> loop_;
  MetricsRegistry metrics_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<Datapath> dp_;
  std::unique_ptr<HealthChecker> hc_;
  std::unique_ptr<ConntrackManager> ct_;
  std::unique_ptr<ConntrackManager> ct_pending_;  // ct_pending: unconfirmed, finished
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<HostTracker> host_;
  std::unique_ptr<CongestionControl> cc_;  // none without a `congestion` section
  bool serving_ = false;                   // start() is done: stops follow --detach-on-exit
  MetricsRegistry::ProviderId datapath_provider_ = 0, health_provider_ = 0, cc_provider_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

Status Daemon::start(const Config& cfg) {
  auto loop = EventLoop::create();
  if (!loop) return loop.error();
  loop_ = std::move(*loop);
  // The metrics endpoint and the API socket bind before anything is attached, so an address
  // in use stops the start with nothing changed.
  if (!cfg.metrics.listen.empty()) {
    auto addr = parse_listen_address(cfg.metrics.listen);  // validated by parse_config
    if (!addr) return addr.error();
    auto srv = MetricsServer::start(*loop_, metrics_, *addr);
    if (!srv) return srv.error();
    metrics_server_ = std::move(*srv);
  }
  if (!cfg.api.socket.empty()) {
    auto api = ApiServer::start(*loop_, cfg.api.socket,
                                [this](const std::string& line) { return on_request(line); });
    if (!api) return api.error();
    api_ = std::move(*api);
  }

  Limits limits{cfg.max_vips, cfg.max_backends, cfg.conntrack_max_entries,
                cfg.conntrack_pending_entries};
  // Before the checker and the sweeps: they work on the maps it loads or adopts.
  auto dp = Datapath::open(limits, opts_.pin_dir);
  if (!dp) return dp.error();
  dp_ = std::move(*dp);

  // Health checks take backends out of (and back into) the selection. The checker logs
  // every flip with its reason.
  auto health = HealthChecker::create(*loop_);
  if (!health) return health.error();
  hc_ = std::move(*health);
  hc_->on_change([this](uint32_t backend_id, bool up, const std::string&) {
    if (auto s = dp_->set_backend_up(backend_id, up); !s)
      spdlog::error("backend {} {}: {}", backend_id, up ? "up" : "down", s.error().to_string());
  });

  // Conntrack expiry by per-state timeouts, and the data path's transition events.
  ConntrackOptions ct_opts;
  ct_opts.sweep_interval = std::chrono::milliseconds(cfg.conntrack_sweep_interval_ms);
  ct_ = std::make_unique<ConntrackManager>(dp_->fds(), cfg.conntrack_timeouts, *loop_, ct_opts);
  ct_opts.table = CtTable::kPendingFlows;
  ct_pending_ =
      std::make_unique<ConntrackManager>(dp_->fds(), cfg.conntrack_timeouts, *loop_, ct_opts);

  auto applied = apply(cfg);
  if (!applied) return applied.error();
  // Host flow tracking (`track:`; none without it): tc_flow on its interfaces, host_flows
  // pinned and expired. Before `info` is published, so `info` still means "fully up".
  auto host = start_host_tracking(cfg, opts_.pin_dir, *loop_);
  if (!host) return host.error();
  host_ = std::move(*host);
  if (host_) metrics_.add("host_flows", host_flow_metrics(*host_->expiry()));
  if (auto s = dp_->publish(); !s) return s;
  if (auto s = ct_->start(); !s) return s;
  if (auto s = ct_pending_->start(); !s) return s;
  metrics_.add("conntrack", conntrack_metrics(*ct_, *ct_pending_));
  return {};
}

Result<ApplySummary> Daemon::apply(const Config& cfg) {
  // Interfaces are checked before the maps change: attach() runs after apply(), and a missing
  // interface found there would leave the maps holding a config that was reported as failed.
  for (const std::string& name : cfg.interfaces)
    if (if_nametoindex(name.c_str()) == 0)
      return sys_error("interface '" + name + "' not found in this network namespace");
  // Before the apply: `info`, written last by it, carries the timeouts to the data path.
  dp_->set_conntrack_timeouts(cfg.conntrack_timeouts);
  auto sum = dp_->apply(cfg);
  if (!sum) return sum;
  // The maps hold `cfg` now: everything else follows it before anything else can fail, so
  // the agent's view (API, health checks, metrics) always matches the data path's.
  running_ = cfg;
  ct_->set_timeouts(cfg.conntrack_timeouts);
  ct_pending_->set_timeouts(cfg.conntrack_timeouts);
  if (host_ && host_->expiry()) host_->expiry()->set_timeouts(cfg.conntrack_timeouts);
  if (opts_.log_level.empty()) spdlog::set_level(spdlog::level::from_str(cfg.log_level));

  std::vector<HealthTarget> targets = health_targets(cfg, dp_->backend_ids());
  // A backend keeps its recorded state across a reload or a takeover (Hitless restart), with
  // its rise and fall counts at zero.
  for (HealthTarget& t : targets)
    if (auto st = dp_->backend_state(t.backend_id)) t.initially_up = st->up;
  hc_->set_targets(std::move(targets));
  sync_health();

  // The providers label by `cfg`'s VIP names and backend ids: replaced with each apply.
  if (datapath_provider_) metrics_.remove(datapath_provider_);
  if (health_provider_) metrics_.remove(health_provider_);
  datapath_provider_ = metrics_.add("datapath", datapath_provider(dp_->fds(), vip_names(cfg)));
  health_provider_ =
      metrics_.add("health", health_metrics(*hc_, backend_labels(cfg, dp_->backend_ids())));
  if (auto s = dp_->attach(cfg.interfaces); !s) return s.error();
  if (auto s = dp_->set_vlans(cfg.interface_configs); !s) return s.error();
  if (auto s = apply_congestion(cfg.congestion); !s) return s.error();
  return sum;
}

// Congestion control follows the config: started when the section appears (or at start),
// new rules for new connections on a reload, and removed with its pins when the section goes.
Status Daemon::apply_congestion(const CongestionConfig& cfg) {
  if (!cfg.enabled) {
    if (cc_) {
      metrics_.remove(cc_provider_);
      cc_->detach_on_exit(true);
      cc_.reset();
    } else {
      remove_congestion_pins(opts_.pin_dir);  // a previous sluiced's, if any
    }
    return {};
  }
  if (!cc_) {
    auto cc = CongestionControl::start(cfg, opts_.pin_dir);
    if (!cc) return cc.error();
    cc_ = std::move(*cc);
    // Added by a reload: it stops as the rest of the running agent does.
    if (serving_) cc_->detach_on_exit(opts_.detach_on_exit);
    cc_provider_ = metrics_.add("cc", cc_metrics_provider(cc_->fds()));
    return {};
  }
  return cc_->apply(cfg);
}

// Backends with a health check follow the checker; the others are up.
void Daemon::sync_health() {
  const auto& ids = dp_->backend_ids();
  for (size_t v = 0; v < running_.vips.size() && v < ids.size(); ++v) {
    for (uint32_t id : ids[v]) {
      const bool up = running_.vips[v].health_check ? hc_->is_up(id) : true;
      if (auto s = dp_->set_backend_up(id, up); !s)
        spdlog::error("backend {}: {}", id, s.error().to_string());
    }
  }
}

// What a reload cannot change while sluiced runs, one message each.
std::vector<std::string> Daemon::unchangeable(const Config& cfg) const {
  std::vector<std::string> errors;
  auto fixed = [&](const char* field, uint32_t now, uint32_t wanted) {
    if (now != wanted)
      errors.push_back(
          std::string(field) + ": cannot change from " + std::to_string(now) + " to " +
          std::to_string(wanted) + " while sluiced runs (the maps are sized at start); keep " +
          std::to_string(now) + ", or resize: stop sluiced, remove the pin directory " +
          opts_.pin_dir + " (this detaches the data path) and start it again");
  };
  fixed("limits.max_vips", running_.max_vips, cfg.max_vips);
  fixed("limits.max_backends", running_.max_backends, cfg.max_backends);
  fixed("conntrack.max_entries", running_.conntrack_max_entries, cfg.conntrack_max_entries);
  fixed("conntrack.pending_entries", running_.conntrack_pending_entries,
        cfg.conntrack_pending_entries);
  if (cfg.track.interfaces != running_.track.interfaces ||
      cfg.track.max_flows != running_.track.max_flows)
    errors.push_back(
        "track: cannot change while sluiced runs; restart sluiced to track other "
        "interfaces");
  if (cfg.congestion.enabled && running_.congestion.enabled &&
      cfg.congestion.max_connections != running_.congestion.max_connections)
    errors.push_back("congestion.max_connections: cannot change from " +
                     std::to_string(running_.congestion.max_connections) + " to " +
                     std::to_string(cfg.congestion.max_connections) +
                     " while sluiced runs (cc_conns is sized at start); keep it, or stop "
                     "sluiced with --detach-on-exit and start it again");
  if (cfg.api.socket != running_.api.socket)
    errors.push_back(
        "api.socket: cannot change while sluiced runs (it would cut off the API "
        "that reloads); restart sluiced to move it, or keep " +
        running_.api.socket);
  return errors;
}

// Moves the metrics endpoint to `listen` (empty: none). If the new one cannot start, the old
// one is back before the error returns.
Status Daemon::move_metrics(const std::string& listen) {
  if (listen == running_.metrics.listen) return {};
  if (listen.empty()) {
    metrics_server_.reset();
    return {};
  }
  metrics_server_.reset();  // free the address in case only the form changed
  auto addr = parse_listen_address(listen);
  auto srv = addr ? MetricsServer::start(*loop_, metrics_, *addr)
                  : Result<std::unique_ptr<MetricsServer>>(addr.error());
  if (!srv) {
    restore_metrics(running_.metrics.listen);
    return srv.error();
  }
  metrics_server_ = std::move(*srv);
  return {};
}

// Serves metrics at `listen` again, where they were served before (none if it is empty).
void Daemon::restore_metrics(const std::string& listen) {
  metrics_server_.reset();
  if (auto old = parse_listen_address(listen))
    if (auto again = MetricsServer::start(*loop_, metrics_, *old))
      metrics_server_ = std::move(*again);
}

json Daemon::reload() {
  const std::string file = opts_.config_path.empty() ? "<embedded default>" : opts_.config_path;
  ConfigResult cr =
      opts_.config_path.empty() ? default_config() : load_config_file(opts_.config_path);
  auto reject = [&](std::vector<std::string> errors) {
    for (const std::string& e : errors) spdlog::error("reload: {}", e);
    spdlog::error("reload of {} rejected ({} error{}); generation {} stays in force", file,
                  errors.size(), errors.size() == 1 ? "" : "s", dp_->generation());
    return json{{"ok", false}, {"errors", errors}, {"generation", dp_->generation()}};
  };
  if (!cr.config) {
    std::vector<std::string> errors;
    for (const ConfigError& e : cr.errors) errors.push_back(e.to_string());
    return reject(errors);
  }
  // --api-socket overrides the file, as at start: otherwise every reload would see a change.
  if (!opts_.api_socket.empty()) cr.config->api.socket = opts_.api_socket;
  const Config& cfg = *cr.config;
  if (auto errors = unchangeable(cfg); !errors.empty()) return reject(errors);
  const std::string old_listen = running_.metrics.listen;
  // Before the apply, as at start: an address in use rejects the reload with the maps untouched.
  if (auto s = move_metrics(cfg.metrics.listen); !s)
    return reject({"metrics.listen: " + s.error().to_string()});
  if (cfg.conntrack_sweep_interval_ms != running_.conntrack_sweep_interval_ms)
    spdlog::warn("reload: conntrack.sweep_interval_ms takes effect when sluiced restarts");

  auto sum = apply(cfg);
  if (!sum) {
    spdlog::error("reload of {} failed while applying: {}", file, sum.error().to_string());
    // Back to the config in force: the data path may hold part of the new one.
    const Config before = running_;
    if (auto back = apply(before); !back)
      spdlog::error("rollback to generation {}'s config failed too: {}", dp_->generation(),
                    back.error().to_string());
    if (cfg.metrics.listen != old_listen) restore_metrics(old_listen);
    return json{
        {"ok", false}, {"errors", {sum.error().to_string()}}, {"generation", dp_->generation()}};
  }
  spdlog::info("config {} applied: {}", file, sum->to_string());
  return json{{"ok", true},
              {"generation", sum->generation},
              {"summary", sum->to_string()},
              {"vips",
               {{"added", sum->vips_added},
                {"removed", sum->vips_removed},
                {"changed", sum->vips_changed},
                {"unchanged", sum->vips_unchanged}}},
              {"backends", {{"added", sum->backends_added}, {"removed", sum->backends_removed}}}};
}

json Daemon::list_vips() const {
  json vips = json::array();
  const auto& ids = dp_->backend_ids();
  for (size_t v = 0; v < running_.vips.size(); ++v) {
    const VipConfig& vc = running_.vips[v];
    json bs = json::array();
    for (size_t b = 0; b < vc.backends.size(); ++b) {
      const BackendConfig& bc = vc.backends[b];
      json j{{"backend", format_host_port(bc.addr, bc.family, bc.port)}};
      if (v < ids.size() && b < ids[v].size()) {
        const uint32_t id = ids[v][b];
        j["id"] = id;
        if (auto st = dp_->backend_state(id)) {
          j["weight"] = st->weight;
          j["up"] = st->up;
          j["drained"] = st->drained;
        }
      }
      bs.push_back(std::move(j));
    }
    vips.push_back({{"vip", vip_key(vc)},
                    {"name", vc.name},
                    {"mode", mode_name(vc.mode)},
                    {"scheduler", sched_name(vc.sched)},
                    {"backends", std::move(bs)}});
  }
  return vips;
}

json Daemon::status() const {
  const auto up = std::chrono::steady_clock::now() - started_;
  return json{{"ok", true},
              {"pid", getpid()},
              {"generation", dp_->generation()},
              {"config", opts_.config_path.empty() ? "<embedded default>" : opts_.config_path},
              {"pin_dir", opts_.pin_dir},
              {"adopted", dp_->adopted()},
              {"vips", running_.vips.size()},
              {"interfaces", running_.interfaces},
              {"uptime_seconds", std::chrono::duration_cast<std::chrono::seconds>(up).count()}};
}

// {"cmd":"backend","action":"drain|enable|add|remove|weight","vip":V,"backend":B[,"weight":N]}
// V: a VIP's name or "ADDR:PORT/PROTO"; B: "ADDR:PORT", or "ADDR" for the VIP's port. What the
// change may do is the config's rules (config_with_backend_change); this applies it.
json Daemon::handle_backend(const json& req) {
  auto str = [&](const char* k) -> std::string {
    auto it = req.find(k);
    return it != req.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto fail = [](std::string msg) { return json{{"ok", false}, {"error", std::move(msg)}}; };
  // Present but not a string is its own mistake, not a missing field.
  for (const char* k : {"action", "vip", "backend"})
    if (auto it = req.find(k); it != req.end() && !it->is_string())
      return fail(std::string("\"") + k + "\" must be a string, not " + it->type_name());
  BackendChange change{str("action"), str("vip"), str("backend"), std::nullopt};
  if (auto w = req.find("weight"); w != req.end()) change.weight = w->dump();
  auto target = find_backend(running_, change);
  if (!target) return fail(target.error().message);
  auto next = config_with_backend_change(running_, change);
  if (!next) return fail(next.error().message);

  const std::string& action = change.action;
  auto done = [&](const std::string& what) {
    spdlog::info("control API: backend {} of {} {}", target->backend_key, target->vip_key, what);
    return json{{"ok", true},
                {"vip", target->vip_key},
                {"backend", target->backend_key},
                {"generation", dp_->generation()}};
  };
  // No apply: a drain is a state of the backend, kept in the maps, not a config change.
  if (action == "drain" || action == "enable") {
    const auto id = dp_->backend_id(target->vip, *target->backend);
    if (!id) return fail("VIP " + target->vip_key + " has no backend " + target->backend_key);
    if (auto s = dp_->set_backend_drained(*id, action == "drain"); !s)
      return fail(s.error().to_string());
    return done(action == "drain" ? "drained (no new flows; established ones stay)" : "enabled");
  }
  auto sum = apply(*next);
  if (!sum) return fail(sum.error().to_string());
  spdlog::info("control API: config changed ({})", sum->to_string());
  return done(action == "add"      ? "added"
              : action == "remove" ? "removed (established flows finish on it)"
                                   : "re-weighted");
}

json Daemon::handle(const json& req) {
  if (!req.is_object()) return json{{"ok", false}, {"error", "a request is one JSON object"}};
  auto cmd = req.find("cmd");
  if (cmd == req.end() || !cmd->is_string())
    return json{{"ok", false}, {"error", "missing \"cmd\"; one of status, vips, backend, reload"}};
  const std::string c = cmd->get<std::string>();
  if (c == "status") return status();
  if (c == "vips") return json{{"ok", true}, {"vips", list_vips()}};
  if (c == "backend") return handle_backend(req);
  if (c == "reload") return reload();
  return json{{"ok", false},
              {"error", "unknown cmd '" + c + "'; one of status, vips, backend, reload"}};
}

std::string Daemon::on_request(const std::string& line) {
  // No exceptions on the loop: a malformed request gets an answer, and `replace` keeps a string
  // that is not valid UTF-8 (from the request or the config) from throwing in dump().
  json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded())
    return json{{"ok", false}, {"error", "the request is not valid JSON"}}.dump();
  return handle(req).dump(-1, ' ', false, json::error_handler_t::replace);
}

int Daemon::run(Config cfg) {
  auto fail = [](const Error& e) {
    spdlog::error("{}", e.to_string());
    return kExitRuntime;
  };
  if (auto s = start(cfg); !s) return fail(s.error());

  spdlog::info("sluiced ready: generation {}, {} VIPs on {} interfaces, maps pinned under {}{}{}",
               dp_->generation(), running_.vips.size(), running_.interfaces.size(), opts_.pin_dir,
               metrics_server_
                   ? ", metrics on http://" +
                         format_listen_address(metrics_server_->local_address()) + "/metrics"
                   : std::string(),
               api_ ? ", API on " + api_->path() : std::string());

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  UniqueFd sfd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sfd.valid()) return fail(sys_error("signalfd"));
  auto on_signal = [&](uint32_t) {
    signalfd_siginfo si{};
    while (read(sfd.get(), &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGHUP) {
        spdlog::info("SIGHUP: reloading {}",
                     opts_.config_path.empty() ? "<embedded default>" : opts_.config_path);
        reload();
        continue;
      }
      if (opts_.detach_on_exit)
        spdlog::info("{}: detaching XDP and removing pins (--detach-on-exit)",
                     strsignal(si.ssi_signo));
      else
        spdlog::info(
            "{}: leaving the data path running (pins under {}); the next sluiced takes "
            "it over, `sluiced --detach-on-exit` removes it on stop",
            strsignal(si.ssi_signo), opts_.pin_dir);
      loop_->stop();
    }
  };
  if (auto s = loop_->add(sfd.get(), EPOLLIN, on_signal); !s) return fail(s.error());
  // From here on, a stop leaves the data path in place unless told otherwise.
  dp_->keep_on_exit(!opts_.detach_on_exit);
  if (cc_) cc_->detach_on_exit(opts_.detach_on_exit);
  serving_ = true;

  if (auto s = loop_->run(); !s) return fail(s.error());
  ct_->stop();
  ct_pending_->stop();
  host_.reset();  // its pin first: the data path may remove the pin directory
  cc_.reset();    // likewise: its pins live in <pin dir>/cc
  api_.reset();
  hc_.reset();
  metrics_server_.reset();
  dp_.reset();
  return kExitOk;
}

}  // namespace

int run_daemon(const DaemonOptions& opts) {
  ConfigResult cr =
      opts.config_path.empty() ? default_config() : load_config_file(opts.config_path);
  if (!cr.config) {
    for (const ConfigError& e : cr.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "sluiced: config rejected (%zu error%s); nothing was changed\n",
                 cr.errors.size(), cr.errors.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  if (opts.check_only) return check_config(*cr.config, opts);
  spdlog::set_level(
      spdlog::level::from_str(opts.log_level.empty() ? cr.config->log_level : opts.log_level));
  route_libbpf_logs();

  // Signals are taken through a signalfd on the event loop, never by async handlers; the
  // signalfd needs them blocked.
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, sig);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    spdlog::error("{}", sys_error("block signals").to_string());
    return kExitRuntime;
  }
  // The namespace before anything else: interfaces are resolved and the devmap filled in it.
  if (!opts.netns.empty()) {
    if (auto s = enter_netns(opts.netns); !s) {
      spdlog::error("{}", s.error().to_string());
      return kExitRuntime;
    }
  }
  if (auto s = ensure_bpffs(); !s) {
    spdlog::error("{}", s.error().to_string());
    return kExitRuntime;
  }
  Daemon d(opts);
  if (!opts.api_socket.empty()) cr.config->api.socket = opts.api_socket;
  return d.run(std::move(*cr.config));
}

}  // namespace sluice
