// The pin directory (--pin-dir, default /sys/fs/bpf/sluice): the one place that creates and
// locks it, opens what is pinned there by name, checks pinned maps against this build's ABI,
// pins and unpins. sluiced's data path (Datapath), its host flow tracking (HostTracker) and
// sluicectl (PinnedMaps) all go through it.
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class PinDir {
 public:
  // A directory to read pins from (sluicectl): nothing is created, nothing locked.
  explicit PinDir(std::string path) : path_(std::move(path)) {}
  // Creates the directory (mode 0700) when it does not exist. With `lock`, holds flock(LOCK_EX)
  // on it for this object's life: two sluiced never manage one data path.
  static Result<PinDir> create(std::string path, bool lock);

  const std::string& path() const { return path_; }
  std::string path_of(std::string_view name) const;
  // create() made the directory (it did not exist).
  bool created() const { return created_; }
  // Whether something is pinned as `name`.
  bool holds(std::string_view name) const;
  // The names of everything pinned there.
  std::vector<std::string> list() const;

  // The object pinned as `name`; `missing_hint` is added to the error when there is none.
  Result<UniqueFd> open(std::string_view name, std::string_view missing_hint = {}) const;
  // A map pinned as `name` whose keys and values must have this build's sizes (abi.h).
  Result<UniqueFd> open_map(std::string_view name, uint32_t key_size, uint32_t value_size,
                            std::string_view missing_hint = {}) const;
  // Reads `info` from the map `info_fd` (pinned here) after checking that it is this build's:
  // its value size first (another version's could be larger than sl_info), then its ABI
  // version. Every reader of pinned maps checks them through here.
  Result<sl_info> read_info(int info_fd) const;

  // Pins `fd` as `name` (`what` names it in the error, e.g. "map").
  Status pin(int fd, std::string_view name, std::string_view what = "map");
  // Whether this object pinned `name` (and has not unpinned it since).
  bool pinned(std::string_view name) const;
  // Removes the pin `name`, whoever made it. A missing one is not an error.
  void unpin(std::string_view name);
  // Removes the directory if it is empty (the pins of another owner keep it).
  void remove() const;

 private:
  std::string path_;
  bool created_ = false;
  UniqueFd lock_;
  std::vector<std::string> pinned_;
};

}  // namespace sluice
