// The control API's backend changes as Config transformations. The rules a changed config
// must keep are validate()'s, not repeated here: this file only finds what the request names.
#include "sluice/config/backend_change.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include "sluice/config/validate.h"
#include "sluice/core/net.h"

namespace sluice {
namespace {

constexpr const char* kActions = "drain, enable, add, remove, weight";

// A weight as the request writes it: a plain JSON integer (no sign, fraction or quotes).
Result<uint16_t> read_weight(const std::optional<std::string>& text) {
  const Error bad{0, "\"weight\" must be an integer 0..65535"};
  // At most five digits before stoul(): a longer number could make it throw.
  if (!text || text->empty() || text->size() > 5 ||
      !std::all_of(text->begin(), text->end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    return bad;
  }
  const unsigned long w = std::stoul(*text);
  if (w > 65535) return bad;
  return static_cast<uint16_t>(w);
}

// "A:P/PROTO" or the name of each VIP, for a message that lists them.
std::string known_vips(const Config& cfg) {
  std::string known;
  for (const VipConfig& v : cfg.vips) {
    const std::string key = format_endpoint(vip_endpoint(v));
    known += (known.empty() ? "" : ", ") + (v.name.empty() ? key : v.name + " (" + key + ")");
  }
  return known;
}

}  // namespace

Result<BackendTarget> find_backend(const Config& cfg, const BackendChange& change) {
  if (change.action.empty()) return Error{0, std::string("missing \"action\"; one of ") + kActions};
  if (change.vip.empty()) return Error{0, "missing \"vip\": a VIP name or ADDRESS:PORT/PROTOCOL"};
  if (change.backend.empty()) return Error{0, "missing \"backend\": ADDRESS:PORT or ADDRESS"};
  BackendTarget t;
  auto vip = std::find_if(cfg.vips.begin(), cfg.vips.end(), [&](const VipConfig& v) {
    return format_endpoint(vip_endpoint(v)) == change.vip ||
           (!v.name.empty() && v.name == change.vip);
  });
  if (vip == cfg.vips.end()) {
    return Error{0, "no VIP '" + change.vip + "'; VIPs: " + known_vips(cfg)};
  }
  t.vip = static_cast<std::size_t>(vip - cfg.vips.begin());
  t.vip_key = format_endpoint(vip_endpoint(*vip));

  // "ADDR:PORT", "[V6]:PORT" or a bare address (the VIP's port).
  std::string addr_text = change.backend;
  // A bare address means the VIP's port: parse_listen_address() needs a port, so its failure
  // leaves the text to be read as an address.
  t.config.port = vip->port;
  if (auto la = parse_listen_address(change.backend)) {
    addr_text = format_ip(la->addr, la->family);
    t.config.port = la->port;
  }
  const auto ip = parse_ip(addr_text);
  if (!ip) {
    return Error{0,
                 "'" + change.backend + "' is not ADDRESS:PORT or ADDRESS (e.g. 198.18.1.2:8080)"};
  }
  std::tie(t.config.addr, t.config.family) = *ip;
  t.backend_key = format_host_port(t.config.addr, t.config.family, t.config.port);
  for (std::size_t b = 0; b < vip->backends.size(); ++b) {
    const BackendConfig& be = vip->backends[b];
    if (format_host_port(be.addr, be.family, be.port) == t.backend_key) t.backend = b;
  }
  return t;
}

Result<Config> config_with_backend_change(const Config& running, const BackendChange& change) {
  auto t = find_backend(running, change);
  if (!t) return t.error();
  const std::string& a = change.action;
  if (a != "drain" && a != "enable" && a != "add" && a != "remove" && a != "weight") {
    return Error{0, "unknown action '" + a + "'; one of " + kActions};
  }
  // Only add may name a backend that is not configured yet; drain and enable need it to exist
  // although they leave the config as it is (their state lives in the maps).
  if (a != "add" && !t->backend) {
    return Error{0, "VIP " + t->vip_key + " has no backend " + t->backend_key};
  }
  Config next = running;
  std::vector<BackendConfig>& backends = next.vips[t->vip].backends;
  if (a == "add") {
    BackendConfig b = t->config;  // line 0: not from the file
    if (change.weight) {
      auto w = read_weight(change.weight);
      if (!w) return w.error();
      b.weight = *w;
    }
    backends.push_back(b);
  } else if (a == "remove") {
    backends.erase(backends.begin() + static_cast<std::ptrdiff_t>(*t->backend));
  } else if (a == "weight") {
    auto w = read_weight(change.weight);
    if (!w) return w.error();
    backends[*t->backend].weight = *w;
  }
  // Whole-config validation, as for a file: a change is taken for exactly the same reasons.
  std::string errors;
  for (const ConfigError& e : validate(next)) errors += (errors.empty() ? "" : "; ") + e.message;
  if (!errors.empty()) return Error{0, errors};
  return next;
}

}  // namespace sluice
