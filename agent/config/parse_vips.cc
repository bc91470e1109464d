// The `vips` section: each VIP's fields and its backends, each read on its own. How they
// relate (a backend's family and port against its VIP's, duplicates, the limits) is
// validate()'s; this file records where each field is, so its errors point there.
#include <tuple>

#include "parser.h"
#include "sluice/core/net.h"

namespace sluice::detail {
namespace {

constexpr std::string_view kVipFields[] = {
    "name", "address",          "port",     "protocol",     "scheduler",
    "mode", "hash_source_port", "backends", "health_check", "on_backend_down"};
constexpr std::string_view kBackendFields[] = {"address", "port", "weight"};
constexpr std::string_view kBackendDownActions[] = {"keep", "reset"};

}  // namespace

void Parser::parse_vips(const MapView& top) {
  const Field* f = top.get("vips");
  constexpr std::string_view kHint = "add at least one VIP under 'vips'";
  if (!f) return missing(top, "vips", kHint);
  if (f->value.IsNull() || (f->value.IsSequence() && f->value.size() == 0)) {
    error(f->loc, f->path, "no VIPs configured; " + std::string(kHint));
    return;
  }
  if (!f->value.IsSequence()) {
    error(f->loc, f->path, "expected a list of VIPs, got " + describe(f->value));
    return;
  }
  for (std::size_t i = 0; i < f->value.size(); ++i) {
    parse_vip(f->value[i], f->loc, indexed(f->path, i));
  }
}

// Every VIP written gets a place in the model, read or not: the limits count them all.
void Parser::parse_vip(const YAML::Node& node, Loc fallback, const std::string& path) {
  VipConfig& vip = cfg_.vips.emplace_back();
  VipNotes& notes = notes_.vips.emplace_back();
  mark(path, loc_of(node, fallback));
  const auto map = read_map(node, fallback, path, kVipFields, "a VIP");
  if (!map) {
    notes.addr = notes.port = notes.proto = notes.mode = notes.backends = false;
    return;
  }
  vip.line = map->loc.line;
  mark(join(path, "name"), map->loc);  // a duplicate name is reported at its VIP
  parse_vip_endpoint(*map, vip, notes);
  parse_vip_behaviour(*map, vip, notes);
  // Backends come last: their port defaults to the VIP's.
  parse_backends(*map, vip, notes);
}

void Parser::parse_vip_endpoint(const MapView& map, VipConfig& vip, VipNotes& notes) {
  if (const Field* f = map.get("name")) {
    if (auto name = read_string(*f)) {
      if (name->empty()) {
        error(f->loc, f->path, "name is empty; give a name or remove the field");
      } else {
        vip.name = *name;
      }
    }
  }
  // Each required field's note turns true only once its value is in the model: a missing or
  // malformed one is then skipped by every rule of validate() that reads it.
  notes.addr = false;
  if (const Field* f = map.get("address")) {
    mark(f->path, f->loc);
    if (auto parsed = read_ip(*f)) {
      std::tie(vip.addr, vip.family) = *parsed;
      notes.addr = true;
    }
  } else {
    missing(map, "address");
  }
  notes.port = false;
  if (const Field* f = map.get("port")) {
    if (auto port = read_uint(*f, 0, 65535, "ports")) {
      vip.port = static_cast<uint16_t>(*port);
      notes.port = true;
    }
  } else {
    missing(map, "port", "give a port number, or 0 for every port");
  }
  notes.proto = false;
  if (const Field* f = map.get("protocol")) {
    if (auto word = read_string(*f, "tcp or udp")) {
      if (auto proto = parse_proto(*word)) {
        vip.proto = *proto;
        notes.proto = true;
      } else {
        error(f->loc, f->path, "unknown protocol '" + *word + "'; valid protocols: tcp, udp");
      }
    }
  } else {
    missing(map, "protocol", "valid protocols: tcp, udp");
  }
}

void Parser::parse_vip_behaviour(const MapView& map, VipConfig& vip, VipNotes& notes) {
  if (const Field* f = map.get("scheduler")) {
    mark(f->path, f->loc);
    if (auto word = read_string(*f, "a scheduler (source-hash, round-robin or least-conn)")) {
      if (auto sched = parse_sched(*word)) {
        vip.sched = *sched;
      } else {
        error(f->loc, f->path,
              "unknown scheduler '" + *word +
                  "'; valid schedulers: source-hash, round-robin, least-conn");
      }
    }
  }
  // Optional: left out, the default mode stands and is valid, so the note stays true.
  if (const Field* f = map.get("mode")) {
    notes.mode = false;
    if (auto word = read_string(*f, "nat or dsr")) {
      if (auto mode = parse_mode(*word)) {
        vip.mode = *mode;
        notes.mode = true;
      } else {
        error(f->loc, f->path, "unknown mode '" + *word + "'; valid modes: nat, dsr");
      }
    }
  }
  if (const Field* f = map.get("hash_source_port")) {
    mark(f->path, f->loc);
    if (auto v = read_bool(*f)) vip.hash_source_port = *v;
  }
  if (const Field* f = map.get("health_check")) parse_health_check(*f, vip, notes);
  if (const Field* f = map.get("on_backend_down")) {
    if (auto word = read_string(*f, "keep or reset")) {
      if (*word == "keep") {
        vip.on_backend_down = BackendDownAction::kKeep;
      } else if (*word == "reset") {
        vip.on_backend_down = BackendDownAction::kReset;
      } else {
        error(f->loc, f->path,
              "unknown value '" + *word + "'; valid values: " + list_words(kBackendDownActions));
      }
    }
  }
}

void Parser::parse_backends(const MapView& map, VipConfig& vip, VipNotes& notes) {
  const Field* f = map.get("backends");
  // validate() finds a VIP without backends; it is reported at the VIP when the list is not
  // written, else at the empty list.
  if (!f) return mark(join(map.path, "backends"), map.loc);
  if (f->value.IsNull() || (f->value.IsSequence() && f->value.size() == 0)) {
    return mark(f->path, f->loc);
  }
  if (!f->value.IsSequence()) {
    error(f->loc, f->path, "expected a list of backends, got " + describe(f->value));
    notes.backends = false;
    return;
  }
  // The rules about the whole list go to its key: the list's own mark is its first item,
  // which reads as "this backend".
  mark(f->path, f->key_loc);
  for (std::size_t i = 0; i < f->value.size(); ++i) {
    parse_backend(f->value[i], f->loc, indexed(f->path, i), vip, notes);
  }
}

// Every backend written gets a place in the model, read or not: the limits count them all.
void Parser::parse_backend(const YAML::Node& node, Loc fallback, const std::string& path,
                           VipConfig& vip, VipNotes& notes) {
  BackendConfig& b = vip.backends.emplace_back();
  BackendNotes& n = notes.backends_read.emplace_back();
  const Loc loc = loc_of(node, fallback);
  b.line = loc.line;
  mark(path, loc);
  const auto map = read_map(node, fallback, path, kBackendFields, "a backend");
  if (!map) {
    n.addr = n.port = n.weight = false;
    return;
  }
  n.addr = false;
  if (const Field* f = map->get("address")) {
    mark(f->path, f->loc);
    if (auto parsed = read_ip(*f)) {
      std::tie(b.addr, b.family) = *parsed;
      n.addr = true;
    }
  } else {
    missing(*map, "address");
  }
  if (const Field* f = map->get("port")) {
    mark(f->path, f->loc);
    const auto port = read_uint(*f, 0, 65535, "ports");
    b.port = static_cast<uint16_t>(port.value_or(0));
    n.port = port.has_value();
  } else {
    b.port = vip.port;  // resolved now: an omitted port is the VIP's
    n.port = notes.port;
  }
  if (const Field* f = map->get("weight")) {
    const auto weight = read_uint(*f, 0, 65535, "weights");
    b.weight = static_cast<uint16_t>(weight.value_or(1));
    n.weight = weight.has_value();
  }
}

}  // namespace sluice::detail
