// The rows of sluicectl's command table (commands.h) and their handlers. vips, stats,
// conntrack and cc read the pinned maps, so they work while sluiced is down; backend, reload and
// status ask the running sluiced through its control API.
#include "commands.h"

#include <sluice/api/api_client.h>
#include <sluice/bpf/maps.h>
#include <sluice/cc/cc_maps.h>
#include <sluice/config/config.h>
#include <sluice/config/ct_expiry.h>
#include <sluice/core/clock.h>
#include <sluice/ctl/ctl.h>

#include <cstdio>
#include <optional>

#include "watch.h"

namespace sluice::ctl {

namespace {

using nlohmann::json;

// ---- views of the pinned maps --------------------------------------------------------------

// Prints a view: its JSON with -o json, else `text` of it. 0, or 1 with the error.
int print_view(const Args& a, const Result<json>& view, std::string (*text)(const json&)) {
  if (!view) {
    std::fprintf(stderr, "sluicectl: %s\n", view.error().to_string().c_str());
    return 1;
  }
  if (a.json()) {
    std::printf("%s\n", view.value().dump(2).c_str());
  } else {
    std::fputs(text(view.value()).c_str(), stdout);
  }
  return 0;
}

// A bad argument: the message says what is wrong and what would be right (exit 2, documented).
int usage_error(const std::string& message) {
  std::fprintf(stderr, "sluicectl: %s\n", message.c_str());
  return 2;
}

int run_vips(const Args& a, const Command&) {
  auto pm = PinnedMaps::open(a.pin_dir);
  return print_view(a, pm ? vips_json(*pm) : pm.error(), vips_text);
}

int run_stats(const Args& a, const Command&) {
  auto pm = PinnedMaps::open(a.pin_dir);
  return print_view(a, pm ? stats_json(*pm) : pm.error(), stats_text);
}

void conntrack_options(CLI::App& cmd, Args& a) {
  Args::Conntrack& c = a.conntrack;
  cmd.add_flag("--host", c.host,
               "the host's own TCP connections on the interfaces of the config's 'track' "
               "section, instead of the VIP flows");
  cmd.add_option("--state", c.state, "only flows in this state (" + valid_conntrack_states() + ")")
      ->type_name("STATE");
  cmd.add_option("--vip", c.vip, "only flows to this VIP ([ADDR]:PORT for IPv6 with a port)")
      ->type_name("ADDR[:PORT]");
  cmd.add_option("--backend", c.backend,
                 "only flows to this backend ([ADDR]:PORT for IPv6 with a port)")
      ->type_name("ADDR[:PORT]");
  cmd.add_option("--older-than", c.older_than,
                 "only flows whose first packet is more than SECONDS old")
      ->type_name("SECONDS");
  cmd.add_option("--timeouts-from", c.timeouts_from,
                 "the sluiced config whose conntrack timeouts 'expires' uses (default: "
                 "nf_conntrack's defaults)")
      ->type_name("CONFIG");
  cmd.add_flag("--summary", c.summary, "count the flows by state instead of listing them");
}

// The conntrack timeouts of a sluiced config file; prints its errors when it is rejected.
std::optional<ConntrackTimeouts> timeouts_from_config(const std::string& path) {
  ConfigResult cr = load_config_file(path);
  if (cr.config) return cr.config->conntrack_timeouts;
  for (const ConfigError& e : cr.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  std::fprintf(stderr, "sluicectl: --timeouts-from %s: config rejected\n", path.c_str());
  return std::nullopt;
}

Result<json> host_flows(const std::string& pin_dir, const ConntrackFilter& filter,
                        const ConntrackTimeouts& timeouts) {
  auto fd = open_pinned_host_flows(pin_dir);
  if (!fd) return fd.error();
  return host_flows_json(fd->get(), filter, timeouts, monotonic_ns());
}

int run_conntrack(const Args& a, const Command&) {
  const Args::Conntrack& c = a.conntrack;
  // Arguments are checked before the maps are opened: a typo is reported as such even while
  // sluiced is down.
  auto filter = parse_conntrack_filter(c.state, c.vip, c.backend, c.older_than);
  if (!filter) return usage_error(filter.error().to_string());
  if (c.host && (!c.vip.empty() || !c.backend.empty())) {
    return usage_error(std::string(!c.vip.empty() ? "--vip" : "--backend") +
                       " selects VIP flows, and host flows (--host) have no VIP or backend; "
                       "filter them with --state or --older-than");
  }
  ConntrackTimeouts timeouts;  // nf_conntrack's defaults
  if (!c.timeouts_from.empty()) {
    auto t = timeouts_from_config(c.timeouts_from);
    if (!t) return 2;
    timeouts = *t;
  }
  auto pm = PinnedMaps::open(a.pin_dir);
  if (!pm) return print_view(a, pm.error(), nullptr);
  // Expiry by the timeouts the running agent published (it expires VIP and host flows by the
  // same ones), unless --timeouts-from says otherwise.
  if (c.timeouts_from.empty()) timeouts = timeouts_from_info(pm->info(), timeouts);
  Result<json> flows = c.host ? host_flows(a.pin_dir, *filter, timeouts)
                              : conntrack_json(*pm, *filter, timeouts, monotonic_ns());
  if (flows && c.summary) flows = conntrack_summary_json(*flows);
  return print_view(a, flows,
                    c.summary ? conntrack_summary_text
                    : c.host  ? host_flows_text
                              : conntrack_text);
}

// ---- cc ------------------------------------------------------------------------------------

void cc_options(CLI::App& cmd, Args& a) {
  Args::Cc& c = a.cc;
  cmd.add_option("--rule", c.rule, "only connections this rule matched")->type_name("NAME");
  cmd.add_option("--dst", c.dst, "only connections whose remote address is in this prefix")
      ->type_name("ADDR|CIDR");
  cmd.add_option("--cc", c.cc,
                 "only connections using this algorithm (cubic, bbr, reno, " SL_CC_OURS ", ...)")
      ->type_name("NAME");
  cmd.add_flag("--rules", c.rules,
               "per rule: connections matched, applied, failed, untracked, closed and live; "
               "and the connections by algorithm, instead of the list");
  cmd.add_option("--watch", c.watch, "redraw every SECONDS (default 2) until interrupted")
      ->expected(0, 1)
      ->default_str("2")
      ->type_name("[SECONDS]");
}

// One reading of `sluicectl cc`: the view, or why there is none. `usage`: the error is the
// user's (--rule names no rule), exit 2.
struct CcOutcome {
  Result<json> view;
  bool usage = false;
};

// The maps are opened afresh each time: under --watch, a sluiced restarted meanwhile may
// have pinned new ones.
CcOutcome cc_outcome(const Args& a, const CcFilter& filter) {
  auto maps = PinnedCcMaps::open(a.pin_dir);
  if (!maps) return {maps.error()};
  auto view = read_cc_view(maps->fds(), a.cc.rules);
  if (!view) return {view.error()};
  if (auto s = check_cc_rule(filter, view->rules); !s) return {s.error(), true};
  json conns = cc_json(*view, filter, monotonic_ns());
  if (a.cc.rules) return {cc_summary_json(*view, filter, conns)};
  return {std::move(conns)};
}

std::string cc_render(const Args& a, const Result<json>& view) {
  if (!view) return "sluicectl: " + view.error().to_string() + "\n";
  if (a.json()) return view.value().dump() + "\n";
  return a.cc.rules ? cc_summary_text(view.value()) : cc_text(view.value());
}

int run_cc(const Args& a, const Command&) {
  const Args::Cc& c = a.cc;
  // Arguments are checked before the maps are opened: a typo is reported as such even while
  // sluiced is down.
  auto filter = parse_cc_filter(c.rule, c.dst, c.cc);
  if (!filter) return usage_error(filter.error().to_string());
  std::optional<double> interval;
  if (!c.watch.empty()) {
    auto i = parse_watch_interval(c.watch);
    if (!i) return usage_error(i.error().to_string());
    interval = *i;
  }
  CcOutcome first = cc_outcome(a, *filter);
  if (first.usage) return usage_error(first.view.error().to_string());
  if (!interval) {
    return print_view(a, first.view, c.rules ? cc_summary_text : cc_text);
  }
  bool drawn = false;
  return ctl::watch(*interval, "sluicectl cc", a.json(), [&] {
    if (!drawn) {
      drawn = true;
      return cc_render(a, first.view);
    }
    return cc_render(a, cc_outcome(a, *filter).view);
  });
}

// ---- the control API -----------------------------------------------------------------------

// The answer to one request, a JSON object; transport errors and non-JSON are errors.
Result<json> api_answer(const std::string& socket, const json& req) {
  auto line = api_call(socket, req.dump());
  if (!line) return line.error();
  json resp = json::parse(*line, nullptr, false);
  if (resp.is_discarded() || !resp.is_object())
    return Error{0, "the control API answered something that is not JSON: " + *line};
  return resp;
}

// Sends `req` and prints the answer: as it came with -o json; else through `done` when it
// was carried out, or its error lines, then `refused` (what a refusal means for this
// command), when it was not. 0: done; 1: refused or failed.
int api_command(const Args& a, const json& req, void (*done)(const json& req, const json& resp),
                void (*refused)(const json& resp) = nullptr) {
  auto resp = api_answer(a.api_socket, req);
  if (!resp) {
    std::fprintf(stderr, "sluicectl: %s\n", resp.error().to_string().c_str());
    return 1;
  }
  const bool ok = resp->value("ok", false);
  if (a.json()) {
    std::printf("%s\n", resp->dump(2).c_str());
  } else if (ok) {
    done(req, *resp);
  } else {
    if (resp->contains("error"))
      std::fprintf(stderr, "sluicectl: %s\n", (*resp)["error"].get<std::string>().c_str());
    if (resp->contains("errors"))
      for (const auto& e : (*resp)["errors"])
        std::fprintf(stderr, "%s\n", e.get<std::string>().c_str());
    if (refused) refused(*resp);
  }
  return ok ? 0 : 1;
}

unsigned long long generation(const json& resp) {
  return static_cast<unsigned long long>(resp.value("generation", 0ull));
}

int run_reload(const Args& a, const Command&) {
  return api_command(
      a, {{"cmd", "reload"}},
      [](const json&, const json& resp) {
        std::printf("reloaded: %s\n", resp.value("summary", "").c_str());
      },
      [](const json& resp) {
        std::fprintf(stderr, "sluicectl: reload rejected; generation %llu stays in force\n",
                     generation(resp));
      });
}

int run_status(const Args& a, const Command&) {
  return api_command(a, {{"cmd", "status"}}, [](const json&, const json& resp) {
    std::printf("sluiced pid %d, config %s (generation %llu)%s\n%zu VIPs on", resp.value("pid", 0),
                resp.value("config", "").c_str(), generation(resp),
                resp.value("adopted", false) ? ", took over a running data path" : "",
                resp.value("vips", static_cast<size_t>(0)));
    for (const auto& i : resp["interfaces"]) std::printf(" %s", i.get<std::string>().c_str());
    std::printf(", up %llds\n", static_cast<long long>(resp.value("uptime_seconds", 0ll)));
  });
}

// ---- backend ACTION ------------------------------------------------------------------------

void backend_target(CLI::App& cmd, Args& a) {
  cmd.add_option("vip", a.backend.vip,
                 "the VIP: its name or ADDRESS:PORT/PROTOCOL (198.19.0.1:80/tcp)")
      ->required();
  cmd.add_option("backend", a.backend.addr,
                 "ADDRESS:PORT ([V6]:PORT), or ADDRESS for the VIP's port")
      ->required();
}

void backend_add_options(CLI::App& cmd, Args& a) {
  backend_target(cmd, a);
  cmd.add_option("--weight", a.backend.weight, "0..65535 (default 1)")->check(CLI::Range(0, 65535));
}

void backend_weight_options(CLI::App& cmd, Args& a) {
  backend_target(cmd, a);
  cmd.add_option("weight", a.backend.weight, "0..65535")->required()->check(CLI::Range(0, 65535));
}

void print_backend_done(const json& req, const json& resp) {
  std::printf("backend %s of %s: %s done (generation %llu)\n", resp.value("backend", "").c_str(),
              resp.value("vip", "").c_str(), req["action"].get<std::string>().c_str(),
              generation(resp));
}

// The action is the row's name, which is also the API's word for it.
json backend_request(const Args& a, const Command& action) {
  return {{"cmd", "backend"},
          {"action", action.name},
          {"vip", a.backend.vip},
          {"backend", a.backend.addr}};
}

int run_backend(const Args& a, const Command& action) {
  return api_command(a, backend_request(a, action), print_backend_done);
}

int run_backend_weighted(const Args& a, const Command& action) {
  json req = backend_request(a, action);
  req["weight"] = a.backend.weight;
  return api_command(a, req, print_backend_done);
}

constexpr Command kBackendActions[] = {
    {"drain", "no new flows to the backend; established ones stay (weight kept)", backend_target,
     run_backend},
    {"enable", "undo drain: the backend takes new flows again", backend_target, run_backend},
    {"add", "add a backend to a VIP (until the next reload)", backend_add_options,
     run_backend_weighted},
    {"remove", "remove a backend from a VIP (its established flows finish on it)", backend_target,
     run_backend},
    {"weight", "set a backend's weight (until the next reload)", backend_weight_options,
     run_backend_weighted},
};

// ---- the table -----------------------------------------------------------------------------

// The one home of every command: the parser, the help, the "unknown command" list and the
// --api-socket help (rows with via_api) are all built from it (commands.h).
constexpr Command kCommands[] = {
    {"vips", "list VIPs and their backends (like ipvsadm -Ln)", nullptr, run_vips},
    {"stats", "traffic per VIP and backend, verdicts, drops, passes", nullptr, run_stats},
    {"conntrack", "list tracked TCP flows (like conntrack -L, ipvsadm -lnc)", conntrack_options,
     run_conntrack},
    {"cc", "connections our congestion-control policy matched: cwnd, RTT (like ss -ti)", cc_options,
     run_cc},
    {"backend", "change a backend of the running sluiced", nullptr, nullptr, /*via_api=*/true,
     "action", kBackendActions},
    {"reload", "make sluiced re-read its config file (like SIGHUP)", nullptr, run_reload,
     /*via_api=*/true},
    {"status", "the running sluiced: pid, config generation, VIPs", nullptr, run_status,
     /*via_api=*/true},
};

}  // namespace

std::span<const Command> commands() { return kCommands; }

}  // namespace sluice::ctl
