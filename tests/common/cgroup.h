// A cgroup v2 of the test's own under the unified hierarchy (mounted at
// /sys/fs/cgroup/unified when the host has none), so that a sockops program attached to it
// sees only the sockets the test makes. enter() moves this whole process into it; the
// destructor moves it back where it was and removes the cgroup.
#pragma once

#include <string>

namespace sluice::test {

class TestCgroup {
 public:
  // `name` is made unique with the pid; `parent` empty: the unified root. Throws
  // std::runtime_error when it cannot be created.
  explicit TestCgroup(const std::string& name, const std::string& parent = {});
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  const std::string& path() const { return path_; }
  // Moves this process (every thread) into the cgroup; the destructor moves it back.
  void enter();

 private:
  std::string path_;
  std::string home_;  // the cgroup the process was in before enter(); empty: never entered
};

// The unified hierarchy's mount point (kCgroup2Default), mounted when missing.
std::string cgroup2_root();

}  // namespace sluice::test
