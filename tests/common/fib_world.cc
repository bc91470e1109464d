// The FIB world: see fib_world.h.
#include "fib_world.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace sluice::test {

XdpRun xdp_test_run(int prog_fd, const std::vector<uint8_t>& frame, unsigned ifindex,
                    uint32_t repeat) {
  // BPF_PROG_TEST_RUN refuses data_in shorter than ETH_HLEN. A shorter frame is passed
  // behind XDP metadata (a multiple of 4, at most 32 bytes): ctx_in.data = metadata length
  // makes the program's data start at the frame, and the program never reads metadata.
  const size_t meta = frame.size() < 14 ? (14 - frame.size() + 3) / 4 * 4 : 0;
  std::vector<uint8_t> in(meta, 0);
  in.insert(in.end(), frame.begin(), frame.end());
  xdp_md ctx_in{};
  ctx_in.data = static_cast<uint32_t>(meta);
  ctx_in.data_end = static_cast<uint32_t>(in.size());
  ctx_in.ingress_ifindex = ifindex;
  xdp_md ctx_out{};
  XdpRun r;
  r.out.resize(in.size() + 256);
  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = in.data();
  opts.data_size_in = static_cast<uint32_t>(in.size());
  opts.data_out = r.out.data();
  opts.data_size_out = static_cast<uint32_t>(r.out.size());
  opts.ctx_in = &ctx_in;
  opts.ctx_size_in = sizeof(ctx_in);
  opts.ctx_out = &ctx_out;
  opts.ctx_size_out = sizeof(ctx_out);
  opts.repeat = static_cast<int>(repeat);
  r.err = bpf_prog_test_run_opts(prog_fd, &opts);
  r.retval = opts.retval;
  r.ns = opts.duration;
  r.out.resize(opts.data_size_out);
  // The output starts at data_meta; drop the metadata we prepended.
  const size_t out_meta = std::min<size_t>(ctx_out.data, r.out.size());
  r.out.erase(r.out.begin(), r.out.begin() + static_cast<long>(out_meta));
  return r;
}

FibWorld::FibWorld(std::string_view tag, int hosts_per_link) {
  lb_ = std::make_unique<NetNs>(tag);
  peer_ = std::make_unique<NetNs>(std::string(tag) + "-peer");
  // Silent peers: no router solicitations, MLD or DAD arriving at an attached program.
  peer_->must("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
  make_veth(*lb_, "tin", *peer_, "pin");
  make_veth(*lb_, "tb1", *peer_, "pb1");
  make_veth(*lb_, "tb2", *peer_, "pb2");
  // Fixed MACs make every expected frame a literal; they are local to these namespaces.
  const std::pair<const char*, const char*> macs[] = {
      {"tin", kTinMac}, {"tb1", kTb1Mac}, {"tb2", kTb2Mac}};
  for (auto [dev, mac] : macs) {
    lb_->must(std::string("ip link set dev ") + dev + " down && ip link set dev " + dev +
              " address " + mac + " && ip link set dev " + dev + " up");
  }
  // bpf_fib_lookup() answers FWD_DISABLED unless forwarding is on for the ingress device.
  lb_->must("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
  lb_->must(
      "ip addr add 198.18.0.1/24 dev tin && ip -6 addr add fd00:18::1/64 dev tin nodad && "
      "ip addr add 198.18.1.1/24 dev tb1 && ip -6 addr add fd00:18:1::1/64 dev tb1 nodad && "
      "ip addr add 198.18.2.1/24 dev tb2 && ip -6 addr add fd00:18:2::1/64 dev tb2 nodad");
  add_neighbours(hosts_per_link);
  lb_->must("ip route add 10.0.0.0/8 via 198.18.0.2 dev tin");
  lb_->must("ip -6 route add fd00:99::/64 via fd00:18::2 dev tin");
  ifindex_[0] = test::ifindex(*lb_, "tin");
  ifindex_[1] = test::ifindex(*lb_, "tb1");
  ifindex_[2] = test::ifindex(*lb_, "tb2");
  wait_for_routes();
}

// Permanent neighbours, in one `ip -batch`: the FIB returns them without any ARP/ND traffic.
void FibWorld::add_neighbours(int hosts_per_link) const {
  std::string batch =
      "neigh replace 198.18.0.2 lladdr 02:00:00:00:00:02 nud permanent dev tin\n"
      "neigh replace fd00:18::2 lladdr 02:00:00:00:00:02 nud permanent dev tin\n"
      "neigh replace 198.18.0.3 lladdr 02:00:00:00:00:03 nud permanent dev tin\n";
  for (int link = 1; link <= 2; ++link) {
    for (int h = 2; h <= hosts_per_link + 1; ++h) {
      char line[256];
      std::snprintf(line, sizeof(line),
                    "neigh replace 198.18.%d.%d lladdr 02:00:00:00:%02x:%02x nud permanent "
                    "dev tb%d\nneigh replace fd00:18:%d::%d lladdr 02:00:00:00:%02x:%02x nud "
                    "permanent dev tb%d\n",
                    link, h, link, h, link, link, h, link, h, link);
      batch += line;
    }
  }
  lb_->must("ip -batch - <<'EOF'\n" + batch + "EOF");
}

void FibWorld::wait_for_routes() const {
  // A route must exist for every link before the FIB can use it (carrier comes up async).
  for (int i = 0; i < 50; i++) {
    CmdResult r = lb_->exec(
        "r4=$(ip route show) && r6=$(ip -6 route show) && "
        "for p in '198.18.0.0/24 dev' '198.18.1.0/24 dev' '198.18.2.0/24 dev'; do "
        "echo \"$r4\" | grep -qF \"$p\" || exit 1; done && "
        "for p in 'fd00:18::/64 dev' 'fd00:18:1::/64 dev' 'fd00:18:2::/64 dev'; do "
        "echo \"$r6\" | grep -qF \"$p\" || exit 1; done");
    if (r.status == 0) return;
    lb_->exec("sleep 0.1");
  }
  throw std::runtime_error("connected routes never appeared:\n" +
                           lb_->exec("ip addr; ip route; ip -6 route").out);
}

std::string fib_vip_yaml(const std::string& address, uint16_t port, const std::string& proto,
                         const std::string& mode, int hosts, uint16_t backend_port,
                         const std::string& more) {
  std::string y = "  - {address: " + address + ", port: " + std::to_string(port) +
                  ", protocol: " + proto + ", mode: " + mode + ", " + more + "backends: [";
  for (int h = 2; h < hosts + 2; ++h) {
    y += std::string(h > 2 ? ", " : "") + "{address: 198.18.1." + std::to_string(h) +
         (backend_port ? ", port: " + std::to_string(backend_port) : "") + "}";
  }
  return y + "]}\n";
}

std::string fib_config_yaml(const std::vector<std::string>& vips, const std::string& more) {
  std::string y = "interfaces: [tin, tb1]\n" + more + "vips:\n";
  for (const std::string& v : vips) y += v;
  return y;
}

unsigned FibWorld::ifindex(Iface i) const { return ifindex_[static_cast<int>(i)]; }

const char* FibWorld::name(Iface i) {
  static const char* const names[] = {"tin", "tb1", "tb2"};
  return names[static_cast<int>(i)];
}

XdpRun FibWorld::run(int prog_fd, const std::vector<uint8_t>& frame, Iface ingress,
                     uint32_t repeat) const {
  return lb_->in([&] { return xdp_test_run(prog_fd, frame, ifindex(ingress), repeat); });
}

}  // namespace sluice::test
