// sluicectl as a library: reads the pinned maps, so it works while sluiced is down.
#pragma once

#include <sluice/maps.h>

#include <nlohmann/json.hpp>
#include <string>

namespace sluice {

// JSON views of the live maps (the shapes `sluicectl -o json` prints).
Result<nlohmann::json> vips_json(const PinnedMaps& pm);
Result<nlohmann::json> stats_json(const PinnedMaps& pm);

// Text renderings of the same JSON.
std::string vips_text(const nlohmann::json& vips);
std::string stats_text(const nlohmann::json& stats);

int ctl_main(int argc, char** argv);

}  // namespace sluice
