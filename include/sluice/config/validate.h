// The config's rules across fields, in one place. The parser runs them on what it read, and
// the control API on the running config with its change applied, so a config is refused for
// the same reasons, in the same words, whichever way it arrives (docs/configuration.md, "Rules
// across fields").
#pragma once

#include <vector>

#include "sluice/config/config.h"

namespace sluice {

// Every cross-field error of `cfg`, in the order the rules run (callers sort them). Each names
// its field path ("vips[1].backends[0].port") and the line the Config records for that VIP or
// backend; a Config built without lines (line 0) gives errors without one. `file` and `column`
// are left empty: only the parser knows them.
std::vector<ConfigError> validate(const Config& cfg);

}  // namespace sluice
