// PinDir (pin_dir.h). The checks here are what makes a pin directory safe to reuse across
// builds: a map pinned by another version is refused with its sizes named, never read with
// this build's layout.

#include <bpf/bpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <sluice/bpf/maps.h>
#include <sluice/bpf/pin_dir.h>

namespace sluice {

Result<PinDir> PinDir::create(std::string path, bool lock) {
  PinDir d(std::move(path));
  if (mkdir(d.path_.c_str(), 0700) == 0)
    d.created_ = true;
  else if (errno != EEXIST)
    return sys_error("create pin directory " + d.path_);
  if (!lock) return d;
  // The lock is on an open fd of the directory, so it goes with the process: a crash never
  // leaves it held. LOCK_NB: a second sluiced stops at once instead of waiting for the first.
  d.lock_.reset(::open(d.path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.lock_.valid()) return sys_error("open pin directory " + d.path_);
  if (flock(d.lock_.get(), LOCK_EX | LOCK_NB) != 0)
    return sys_error("lock pin directory " + d.path_ +
                     (errno == EWOULDBLOCK ? " (another sluiced is running on it)" : ""));
  return d;
}

std::string PinDir::path_of(std::string_view name) const { return path_ + "/" + std::string(name); }

bool PinDir::holds(std::string_view name) const { return access(path_of(name).c_str(), F_OK) == 0; }

std::vector<std::string> PinDir::list() const {
  std::vector<std::string> out;
  DIR* d = opendir(path_.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      out.emplace_back(e->d_name);
  closedir(d);
  return out;
}

Result<UniqueFd> PinDir::open(std::string_view name, std::string_view missing_hint) const {
  const std::string path = path_of(name);
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd.valid()) {
    // errno first: building the message below may allocate and change it.
    const int err = errno;
    return Error{err, "open pinned map " + path +
                          (err == ENOENT ? std::string(missing_hint) : std::string())};
  }
  return fd;
}

Result<UniqueFd> PinDir::open_map(std::string_view name, uint32_t key_size, uint32_t value_size,
                                  std::string_view missing_hint) const {
  auto fd = open(name, missing_hint);
  if (!fd) return fd.error();
  const std::string path = path_of(name);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd->get(), &info, &len) != 0) return sys_error("inspect " + path);
  // The agent's own load gets this check from libbpf (bpf_map__reuse_fd); readers that open
  // pins directly (sluicectl, host tracking) must make it, or they would misread the entries.
  if (info.key_size != key_size || info.value_size != value_size) {
    return Error{0, path + " has " + std::to_string(info.key_size) + "-byte keys and " +
                        std::to_string(info.value_size) + "-byte values; this build reads " +
                        std::to_string(key_size) + " and " + std::to_string(value_size) +
                        " (ABI version " + std::to_string(SL_ABI_VERSION) + ")"};
  }
  return fd;
}

Result<sl_info> PinDir::read_info(int info_fd) const {
  bpf_map_info mi{};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(info_fd, &mi, &len) != 0)
    return sys_error("inspect pinned map " + path_of("info"));
  // Before the lookup: the kernel copies value_size bytes into an sl_info.
  if (mi.value_size != sizeof(sl_info))
    return Error{0, "the data path pinned under " + path_ +
                        " is of another sluice version (its info map holds " +
                        std::to_string(mi.value_size) + "-byte values, this build's " +
                        std::to_string(sizeof(sl_info)) + ")"};
  auto info = sluice::read_info(info_fd);
  if (!info) return info.error();
  if (info->abi_version != SL_ABI_VERSION)
    return Error{0, "the data path pinned under " + path_ + " has ABI version " +
                        std::to_string(info->abi_version) + ", this build speaks " +
                        std::to_string(SL_ABI_VERSION)};
  return info;
}

Status PinDir::pin(int fd, std::string_view name, std::string_view what) {
  const std::string path = path_of(name);
  if (bpf_obj_pin(fd, path.c_str()) != 0) {
    const int err = errno;
    return sys_error(
        "pin " + std::string(what) + " at " + path +
            (err == EEXIST ? " (pins left by another sluiced? stop it, or remove " + path_ + ")"
                           : ""),
        err);
  }
  pinned_.emplace_back(name);
  return {};
}

// Kept so that a start cut short removes only the pins it made (Datapath::unpin).
bool PinDir::pinned(std::string_view name) const {
  return std::find(pinned_.begin(), pinned_.end(), name) != pinned_.end();
}

// Removing a link's pin detaches XDP once no fd holds the link any more.
void PinDir::unpin(std::string_view name) {
  unlink(path_of(name).c_str());
  pinned_.erase(std::remove(pinned_.begin(), pinned_.end(), name), pinned_.end());
}

// rmdir fails on a non-empty directory: pins another owner left keep it, by design.
void PinDir::remove() const { rmdir(path_.c_str()); }

}  // namespace sluice
