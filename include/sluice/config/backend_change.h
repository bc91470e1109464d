// A change to one backend of the running config, as the control API asks for it (docs/cli.md,
// "sluicectl backend"). Pure functions of the Config: the daemon applies what they return, so
// the API takes a change for exactly the reasons a config file would be taken (validate()).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "sluice/config/config.h"
#include "sluice/core/result.h"

namespace sluice {

// {"cmd":"backend","action":A,"vip":V,"backend":B[,"weight":N]}, its fields as written.
struct BackendChange {
  std::string action;   // drain, enable, add, remove or weight
  std::string vip;      // a VIP's name, or "ADDR:PORT/PROTO"
  std::string backend;  // "ADDR:PORT", "[ADDR6]:PORT", or "ADDR" for the VIP's port
  // The request's "weight" as its JSON text ("2"), if it has one: add (default 1) and weight
  // (required) read it.
  std::optional<std::string> weight;
};

// The backend a change names.
struct BackendTarget {
  std::size_t vip = 0;                 // index in Config::vips
  std::optional<std::size_t> backend;  // index in the VIP's backends; none: not configured
  BackendConfig config;                // the backend as named: address, family and port
  std::string vip_key;                 // "198.19.0.1:80/tcp"
  std::string backend_key;             // "198.18.1.2:8080"
};

// Finds the VIP and the backend of `change` in `cfg`. The error names what is missing or
// malformed, or lists the VIPs when none matches.
Result<BackendTarget> find_backend(const Config& cfg, const BackendChange& change);

// `running` with `change` made: a backend added, removed or re-weighted. drain and enable leave
// the config as it is (they are a state of the backend, kept in the maps), but still need the
// backend to exist. The result passed validate(); its errors are the error's message, joined
// by "; ".
Result<Config> config_with_backend_change(const Config& running, const BackendChange& change);

}  // namespace sluice
