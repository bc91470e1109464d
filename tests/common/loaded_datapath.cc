// The loaded data path of the tests and benchmarks: see loaded_datapath.h.
#include "loaded_datapath.h"

namespace sluice::test {

Limits small_limits(uint32_t conntrack_entries) {
  Limits l;
  l.max_vips = 4;
  l.max_backends = 16;
  l.conntrack_entries = conntrack_entries;
  return l;
}

std::unique_ptr<Datapath> load_datapath(const Limits& limits, std::string* error) {
  auto d = Datapath::load(limits);
  if (!d) {
    *error = d.error().to_string();
    return nullptr;
  }
  return std::move(*d);
}

std::unique_ptr<Datapath> load_attached(const Limits& limits, const Config& cfg,
                                        std::string* error) {
  std::unique_ptr<Datapath> dp = load_datapath(limits, error);
  if (!dp) return nullptr;
  for (const Status& s : {to_status(dp->apply(cfg)), dp->attach(cfg.interfaces)}) {
    if (!s) {
      *error = s.error().to_string();
      return nullptr;
    }
  }
  return dp;
}

std::optional<Config> parse_or_error(const std::string& yaml, std::string* error) {
  ConfigResult r = parse_config(yaml, "<test>");
  if (r.config) return std::move(*r.config);
  error->clear();
  for (const ConfigError& e : r.errors) *error += e.to_string() + "\n";
  return std::nullopt;
}

}  // namespace sluice::test
