// cgroup v2 paths -> what the sockops program compares (docs/design.md, "Congestion
// control"): the kernfs id of the directory, from name_to_handle_at (the file handle of a
// cgroup2 directory is its 64-bit id), and its depth in the hierarchy, from mountinfo.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <sluice/cc/cgroup.h>
#include <spdlog/spdlog.h>

namespace sluice {

namespace {

bool is_cgroup2(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

// Path components of a normalized absolute path.
size_t depth_of(const std::string& path) {
  size_t n = 0;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '/');)
    if (!part.empty()) ++n;
  return n;
}

// The depth of `real` (a resolved path) below the root of its cgroup2 hierarchy: its depth
// below the deepest cgroup2 mount point holding it, plus that mount's own root in the tree.
Result<uint32_t> level_of(const std::string& real) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best_mount, best_root;
  while (std::getline(in, line)) {
    // "id parent major:minor root mount_point options ... - fstype source super_options"
    std::istringstream ls(line);
    std::string id, parent, dev, root, mount_point;
    ls >> id >> parent >> dev >> root >> mount_point;
    const auto dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    const bool holds =
        real == mount_point || mount_point == "/" || real.rfind(mount_point + "/", 0) == 0;
    if (holds && mount_point.size() > best_mount.size()) best_mount = mount_point, best_root = root;
  }
  if (best_mount.empty()) return Error{ENOENT, real + " is under no cgroup2 mount"};
  return static_cast<uint32_t>(depth_of(best_root) + depth_of(real) - depth_of(best_mount));
}

}  // namespace

Status ensure_cgroup2(const std::string& path) {
  if (is_cgroup2(path)) return {};
  if (path != kCgroup2Default)
    return Error{ENOTDIR, path +
                              " is not a cgroup v2 directory (mount -t cgroup2 none <dir>, "
                              "or use " +
                              std::string(kCgroup2Default) + ")"};
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("create " + path);
  if (mount("none", path.c_str(), "cgroup2", 0, nullptr) != 0)
    return sys_error("mount cgroup2 at " + path);
  spdlog::info("mounted cgroup2 at {}", path);
  return {};
}

Result<UniqueFd> open_cgroup2(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return sys_error("open cgroup " + path);
  if (!is_cgroup2(path)) return Error{ENOTDIR, path + " is not a cgroup v2 directory"};
  return fd;
}

Result<CgroupRef> resolve_cgroup2(const std::string& path) {
  if (!is_cgroup2(path))
    return Error{ENOENT, "cgroup " + path + " does not exist or is not a cgroup v2 directory"};
  char real[PATH_MAX];
  if (!realpath(path.c_str(), real)) return sys_error("resolve cgroup " + path);
  // A cgroup2 directory's file handle is its 64-bit kernfs id.
  alignas(file_handle) char buf[sizeof(file_handle) + sizeof(uint64_t)] = {};
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = sizeof(uint64_t);
  int mount_id = 0;
  if (name_to_handle_at(AT_FDCWD, real, fh, &mount_id, 0) != 0)
    return sys_error("read the id of cgroup " + path);
  uint64_t id = 0;
  std::memcpy(&id, buf + sizeof(file_handle), sizeof(id));
  auto level = level_of(real);
  if (!level) return level.error();
  return CgroupRef{id, *level};
}

}  // namespace sluice
