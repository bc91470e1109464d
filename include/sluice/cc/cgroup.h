// cgroup v2 for the congestion-control policy: where sockops attaches, and the ids its rules
// match.
#pragma once

#include <sluice/cc/policy.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <string>

namespace sluice {

// The cgroup v2 mount sluice uses when the host has none elsewhere (hybrid hosts, such as
// Debian 12 with the legacy layout, mount it here; the kernel has one hierarchy, so every
// mount shows the same tree).
inline constexpr const char* kCgroup2Default = "/sys/fs/cgroup/unified";

// Makes sure `path` is a directory of a cgroup v2 file system. The default path is mounted
// (cgroup2, after mkdir) when nothing is mounted there; any other path must exist already.
Status ensure_cgroup2(const std::string& path);
// Opens a cgroup v2 directory (for BPF_CGROUP_SOCK_OPS), after ensure_cgroup2().
Result<UniqueFd> open_cgroup2(const std::string& path);
// The cgroup's id (its kernfs id) and level (0 = the hierarchy's root), as the BPF side sees
// them through the socket's cgroup.
Result<CgroupRef> resolve_cgroup2(const std::string& path);

}  // namespace sluice
