// `--watch`: a view redrawn until interrupted, like watch(1) around sluicectl, but without
// starting a process per frame (and so without re-reading the whole CLI each time).
#pragma once

#include <functional>
#include <string>

namespace sluice::ctl {

// Prints frame() every `interval_s` seconds until SIGINT, SIGTERM or SIGHUP; returns 0 then.
// On a terminal each frame replaces the last, under a line naming `title` and the time;
// elsewhere (a pipe, a file) frames follow each other: with `json`, one compact document per
// line, else each under its title line. frame() shows its own errors: one bad read (sluiced
// restarting) does not end the watch.
int watch(double interval_s, const std::string& title, bool json,
          const std::function<std::string()>& frame);

}  // namespace sluice::ctl
