// The loaded data path of the tests and benchmarks: the one place that turns test limits into
// Datapath::load (real maps, verifier and all), optionally with a config applied and attached.
#pragma once

#include <sluice/bpf/datapath.h>
#include <sluice/config/config.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace sluice::test {

// Room for 4 VIPs and 16 backends: small maps, fast to load and to reset.
Limits small_limits(uint32_t conntrack_entries = 1024);

// Datapath::load(limits): nothing applied, attached or pinned. nullptr with *error set on
// failure.
std::unique_ptr<Datapath> load_datapath(const Limits& limits, std::string* error);

// load_datapath(), then apply(cfg) and attach(cfg.interfaces). Call inside the namespace of
// those interfaces; the caller destroys the result there too (its XDP links go with it).
std::unique_ptr<Datapath> load_attached(const Limits& limits, const Config& cfg,
                                        std::string* error);

// parse_config(yaml), every error on its own line in *error on failure.
std::optional<Config> parse_or_error(const std::string& yaml, std::string* error);

}  // namespace sluice::test
