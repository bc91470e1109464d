#include "cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include <sluice/cc/cgroup.h>

namespace sluice::test {

namespace {

// The process's cgroup v2 path relative to the hierarchy's root ("0::/PATH").
std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "/";
}

void move_self(const std::string& dir) {
  std::ofstream procs(dir + "/cgroup.procs");
  procs << getpid() << std::flush;
  if (!procs) throw std::runtime_error("move the test process into " + dir);
}

}  // namespace

std::string cgroup2_root() {
  if (auto s = ensure_cgroup2(kCgroup2Default); !s) throw std::runtime_error(s.error().to_string());
  return kCgroup2Default;
}

TestCgroup::TestCgroup(const std::string& name, const std::string& parent) {
  path_ =
      (parent.empty() ? cgroup2_root() : parent) + "/sl-" + name + "-" + std::to_string(getpid());
  if (mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
    throw std::runtime_error("create cgroup " + path_);
}

void TestCgroup::enter() {
  if (home_.empty()) home_ = cgroup2_root() + own_cgroup();
  move_self(path_);
}

TestCgroup::~TestCgroup() {
  try {
    if (!home_.empty()) move_self(home_);
  } catch (...) {
  }
  rmdir(path_.c_str());
}

}  // namespace sluice::test
