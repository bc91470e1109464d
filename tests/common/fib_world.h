// The FIB world: the one private network in which the XDP program runs by BPF_PROG_TEST_RUN
// and bpf_fib_lookup() answers from a routing table and neighbour cache the test fully
// controls. Used by the packet tests (xdp_env.h), the Datapath tests and the benchmarks.
//
//   client 198.18.0.2 / fd00:18::2   (02:00:00:00:00:02) -- tin  198.18.0.1 fd00:18::1
//   backend 198.18.0.3               (02:00:00:00:00:03) -/        (02:00:00:00:00:01)
//   backends 198.18.1.H / fd00:18:1::H (02:00:00:00:01:HH) -- tb1 198.18.1.1 fd00:18:1::1
//   backends 198.18.2.H / fd00:18:2::H (02:00:00:00:02:HH) -- tb2 198.18.2.1 fd00:18:2::1
//
// H = 2 .. hosts_per_link + 1 (HH: H in hex). The neighbours are permanent entries, so no
// traffic is ever needed; the veth peers live in a second namespace only so that the links
// have carrier (and thus connected routes), and stay silent (no IPv6 there), so no frame
// reaches an attached program unless a test runs it. 198.18.1.9 is on tb1's subnet without a
// neighbour (FIB "no neighbour") while hosts_per_link < 8; 192.0.2.0/24 has no route at all;
// 10.0.0.0/8 is routed via the client (remote clients), and fd00:99::/64 likewise via
// fd00:18::2 (backends behind a gateway). The VIPs 203.0.113.10 and 2001:db8:100::10 are on
// no interface: the program, not the kernel, owns them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "netns.h"

namespace sluice::test {

inline constexpr char kClientMac[] = "02:00:00:00:00:02";
inline constexpr char kRouterMac[] = "02:00:00:00:00:fe";  // a router on the client side
inline constexpr char kTinMac[] = "02:00:00:00:00:01";
inline constexpr char kTinNbMac[] = "02:00:00:00:00:03";
inline constexpr char kTb1Mac[] = "02:00:00:00:01:01";
inline constexpr char kB1Mac[] = "02:00:00:00:01:02";
inline constexpr char kTb2Mac[] = "02:00:00:00:02:01";
inline constexpr char kB2Mac[] = "02:00:00:00:02:02";

inline constexpr char kClient4[] = "198.18.0.2";
inline constexpr char kClient6[] = "fd00:18::2";
inline constexpr char kRouter4[] = "198.18.0.254";  // sends ICMP errors about the client's path
inline constexpr char kRouter6[] = "fd00:18::fe";
inline constexpr char kHost4[] = "198.18.0.1";  // the LB host's own addresses: never touched
inline constexpr char kHost6[] = "fd00:18::1";
inline constexpr char kVip4[] = "203.0.113.10";
inline constexpr char kVip6[] = "2001:db8:100::10";
inline constexpr char kBe1v4[] = "198.18.1.2";
inline constexpr char kBe1v6[] = "fd00:18:1::2";
inline constexpr char kBe2v4[] = "198.18.2.2";
inline constexpr char kBe2v6[] = "fd00:18:2::2";
inline constexpr char kBeTin4[] = "198.18.0.3";      // backend on the ingress link: XDP_TX
inline constexpr char kBeNoNeigh4[] = "198.18.1.9";  // routed via tb1, neighbour unknown
inline constexpr char kBeNoRoute4[] = "192.0.2.99";  // no route

enum class Iface { kTin, kTb1, kTb2 };

// What an XDP test run returned: err is the syscall's (0 or -errno); out is the frame as the
// program left it; ns the kernel's average per run.
struct XdpRun {
  int err = 0;
  uint32_t retval = 0;
  std::vector<uint8_t> out;
  uint64_t ns = 0;
};

// One BPF_PROG_TEST_RUN of an XDP program: `frame` received on ifindex, `repeat` times. A frame
// shorter than ETH_HLEN (which the kernel refuses as data_in) goes behind XDP metadata. Call
// inside the namespace of `ifindex`: the kernel resolves it in the calling thread's.
XdpRun xdp_test_run(int prog_fd, const std::vector<uint8_t>& frame, unsigned ifindex,
                    uint32_t repeat = 1);

// A VIP block of a config for this world: `hosts` backends on tb1, 198.18.1.2 onwards, each at
// `backend_port` (0: none written, so the VIP's port); `more` adds keys ("scheduler: rr, ").
std::string fib_vip_yaml(const std::string& address, uint16_t port, const std::string& proto,
                         const std::string& mode, int hosts, uint16_t backend_port,
                         const std::string& more = "");

// A config over tin and tb1 with the blocks `vips`; `more` is top-level YAML before them
// ("limits: {...}\n").
std::string fib_config_yaml(const std::vector<std::string>& vips, const std::string& more = "");

class FibWorld {
 public:
  // Builds the namespaces "<tag>" and "<tag>-peer"; throws std::runtime_error on failure,
  // after removing whatever was created.
  explicit FibWorld(std::string_view tag, int hosts_per_link = 1);
  FibWorld(const FibWorld&) = delete;
  FibWorld& operator=(const FibWorld&) = delete;

  // The load balancer's namespace, whose interfaces are tin, tb1 and tb2.
  const NetNs& lb() const { return *lb_; }
  unsigned ifindex(Iface i) const;
  static const char* name(Iface i);

  // xdp_test_run() of a frame received on `ingress`, from inside lb().
  XdpRun run(int prog_fd, const std::vector<uint8_t>& frame, Iface ingress = Iface::kTin,
             uint32_t repeat = 1) const;

 private:
  void add_neighbours(int hosts_per_link) const;
  void wait_for_routes() const;

  std::unique_ptr<NetNs> lb_, peer_;
  unsigned ifindex_[3] = {};
};

}  // namespace sluice::test
