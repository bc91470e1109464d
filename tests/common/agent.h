// The end-to-end test world, shared by the e2e tests: the real sluiced attaches XDP to the
// veths of a load-balancer namespace, and real TCP/UDP clients in a client namespace reach
// sl-echo backends through the VIPs. A test derives from LbIntegration and calls
// StartAgent(config_yaml(...)).
//
// Each test builds its own world: the topology of scripts/topology.sh, from the same names and
// addresses (topology.env, compiled into topology.h):
//
//   client ns                 lb ns (sluiced here)               backend ns N = 1..3
//   c0 198.18.0.2/24 ------- lc 198.18.0.1/24
//      fd00:18::2/64            fd00:18::1/64
//      + 198.18.0.100-131       lbN 198.18.N.1/24 -------------- eth0 198.18.N.2/24
//   VIP routes via the LB           fd00:18:N::1/64                   fd00:18:N::2/64
//                                                                lo 198.19.0.2/32 (DSR VIP)
//                                                                sl-echo backend-N
//
// Clients run in this process, on threads, with sockets created inside the client namespace
// (NetNs::in, sockets.h). The binaries' paths (kSluiced, ...) are compiled into this library.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "netns.h"
#include "sockets.h"
#include "topology.h"

namespace sluice::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

extern const char kSluiced[];
extern const char kSluicectl[];
extern const char kSlEcho[];
extern const char kSlProbe[];
extern const char kSlSpoof[];

inline constexpr int kSources = kTopoSources;  // 198.18.0.100 .. 198.18.0.131

std::string read_file(const fs::path& p);
void write_file(const fs::path& p, const std::string& text);

// Polls `pred` until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// A child process with stdout+stderr in a log file. The destructor kills and reaps it, so no
// path out of a test leaves it running; and should the test process itself die (a crash, a
// ctest timeout), the child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so sluiced still
// detaches and unpins.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const fs::path& log);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const;

  // The exit status (exit code, or 128 + signal) once it has exited; reaps it.
  std::optional<int> poll();

  // Sends `sig` and waits up to `timeout`; then SIGKILLs. Returns the status, or nullopt when
  // it had to be killed.
  std::optional<int> stop(int sig, std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// sl-echo inside `ns`, ready (all sockets bound) when the function returns.
std::unique_ptr<Child> start_echo(const NetNs& ns, const std::string& name, const std::string& tcp,
                                  const std::string& udp, const fs::path& rundir);

// The demo topology (scripts/topology.sh). Members are destroyed in reverse order: the
// servers stop before their namespaces go.
class Topology {
 public:
  explicit Topology(const fs::path& rundir);

  // Extra client source i (0 .. kSources - 1).
  static std::string source(int i);
  // Backend n's (1-based) address on its link, and the LB's.
  static std::string backend4(int n);
  static std::string backend6(int n);

  NetNs client{"it-c"};
  NetNs lb{"it-lb"};
  std::array<std::unique_ptr<NetNs>, kTopoBackends> backends;
  std::vector<std::unique_ptr<Child>> servers;

 private:
  void build_links();
  void build_lb();
  void build_client();
  void build_backend(int n, const fs::path& rundir);
};

std::vector<std::string> v4_sources();

// One VIP block of the config, with the three backends of the topology.
std::string vip_yaml(const std::string& address, int port, const std::string& proto,
                     const std::string& mode, int backend_port);

// A config with the topology's interfaces, `vips` (vip_yaml() blocks) and `extra`: more
// top-level YAML (for example a `conntrack:` section).
std::string config_yaml(const std::vector<std::string>& vips, const std::string& extra = "");

// Pin and run directories of test processes that died before their teardown (pid gone).
void sweep_stale_dirs();

// ---- fixture -------------------------------------------------------------------------------

class LbIntegration : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::string agent_log() const { return read_file(rundir_ / "sluiced.log"); }

  // Starts sluiced in the LB namespace with `yaml` and waits until it is ready (<pin>/info).
  // With `detach_on_exit` (the default for tests) it removes the data path when it stops;
  // without, it leaves it for the next sluiced (hitless restart), and the log file is
  // appended to.
  void StartAgent(const std::string& yaml, bool detach_on_exit = true);

  // No interface of the LB namespace has an XDP program attached.
  void ExpectNoXdp();

  fs::path api_socket() const { return rundir_ / "sluiced.sock"; }

  // `sluicectl --pin-dir D --api-socket S <args>`; fails the test when it exits non-zero.
  std::string Sluicectl(const std::string& args);

  fs::path rundir_;
  fs::path pin_dir_;
  bool detach_on_exit_ = true;
  std::unique_ptr<Topology> topo_;
  std::unique_ptr<Child> agent_;  // declared last: stopped before the topology goes
};

}  // namespace sluice::test
