// Driver of the forwarding benchmark (issue #2). bench/fwd/run.sh builds the topology, sets up
// the load balancer under test (sluiced, nftables, or nothing) and calls:
//
//   fwd_bench measure --label L --client-ns NS --lb-ns NS --backend-ns NS1,NS2,NS3
//                     --dst IP --dport N [--proto udp|tcp] [--lc none|trivial|fib|drop]
//                     [--sink xdp|tc] [--seconds S] [--cpu C] [--nice N] ...
//       One measured run; prints one JSON line. For the run's lifetime it attaches:
//         - a counting sink on each backend's eth0 (XDP, or TC ingress with --sink tc);
//         - with --lc trivial, the trivial forwarder on the LB's lc (--lc fib: the same
//           with bpf_fib_lookup); with --lc drop, a counting XDP_DROP on lc (the
//           "generator + one veth hop" floor);
//         - fwd_probe: exact per-CPU softirq time, split by the device polled. A kernel
//           that refuses its tp_btf programs gets a run without it: the CPU fields are
//           left out and the JSON's "notes" say why.
//       Then it pins itself to one CPU at nice -20 and runs the generator (gen.bpf.c)
//       through BPF_PROG_TEST_RUN with live frames from the client namespace: a warm-up
//       that also sizes the measured run to --seconds, then the measured run. A kernel that
//       refuses live frames gets the same frames from an AF_PACKET socket instead
//       ("generator": "af_packet", and a note).
//       Every attachment is owned by a bpf_link fd or undone by a destructor, so the process
//       leaves nothing behind when it exits (a killed process leaves at most a TC filter in
//       a backend namespace, which run.sh deletes with the namespace).
//
//   fwd_bench report FILE [--baseline LABEL] [--nft LABEL]
//       Reads the JSON lines of FILE and prints Markdown tables: medians, spread, ratios to
//       the baseline (default "trivial"), and the targets (sluice vs the baseline,
//       the nftables run (default "nftables UDP DNAT") vs sluice).
//
// Where the CPU figures come from: the generator's XDP_TX turns into a redirect out of the
// client's veth; the LB's veth (lc) then runs its NAPI poll (the LB program or the kernel
// stack, and the transmit into the backend's veth), and then each backend veth runs its
// poll (the sink), all in NET_RX softirq on the generator's CPU when test_run re-enables
// bottom halves after each batch. The generator's own work is process-context system time.
//   - "LB CPU" = time in lc's polls / delivered packets: what the LB host pays per packet
//     (receive, decision, transmit). This is the headline figure.
//   - "all NET_RX" = all NET_RX softirq time / delivered packets: the above plus the
//     backends' receive and sink, which this topology runs on the LB's CPU too (the same
//     XDP sink for every variant).
// fwd_probe.bpf.c explains how the two are measured.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sluice/core/fd.h>
#include <sluice/core/result.h>
#include "fwd_abi.h"
#include "fwd_gen.skel.h"
#include "fwd_probe.skel.h"
#include "fwd_sink.skel.h"
#include "fwd_trivial.skel.h"

namespace {

using nlohmann::json;
using sluice::Error;
using sluice::Result;
using sluice::Status;
using sluice::sys_error;
using sluice::UniqueFd;

// ---------------------------------------------------------------------------------------
// Network namespaces and interfaces

// Moves the (single) thread between namespaces; the original one is kept open to return to.
class NetnsSwitch {
 public:
  static Result<NetnsSwitch> create() {
    UniqueFd home(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!home.valid()) return sys_error("open /proc/self/ns/net");
    return NetnsSwitch(std::move(home));
  }
  Status enter(const std::string& name) {
    std::string path = "/run/netns/" + name;
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return sys_error("open network namespace " + path);
    if (setns(fd.get(), CLONE_NEWNET) != 0) return sys_error("enter network namespace " + name);
    return {};
  }
  // Back to where the process started; a failure here would strand every later socket.
  void home() {
    if (setns(home_.get(), CLONE_NEWNET) != 0) {
      std::perror("fwd_bench: return to the original network namespace");
      std::abort();
    }
  }

 private:
  explicit NetnsSwitch(UniqueFd home) : home_(std::move(home)) {}
  UniqueFd home_;
};

struct Iface {
  int ifindex = 0;
  uint8_t mac[6] = {};
};

// Looks `name` up in the current network namespace.
Result<Iface> iface(const std::string& name) {
  Iface r;
  r.ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (r.ifindex == 0) return sys_error("interface " + name + " not found");
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return sys_error("socket");
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name.c_str());
  if (ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0) return sys_error("read MAC of " + name);
  std::memcpy(r.mac, ifr.ifr_hwaddr.sa_data, 6);
  return r;
}

Result<UniqueFd> attach_xdp(int prog_fd, int ifindex, const std::string& what) {
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
  int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
  if (fd < 0)
    return sys_error("attach XDP (native) to " + what +
                     (errno == EBUSY ? " (another XDP program is attached)" : ""));
  return UniqueFd(fd);
}

// ---------------------------------------------------------------------------------------
// BPF objects

template <class T, void (*Destroy)(T*)>
struct SkelPtr {
  T* p = nullptr;
  SkelPtr() = default;
  explicit SkelPtr(T* x) : p(x) {}
  SkelPtr(SkelPtr&& o) noexcept : p(std::exchange(o.p, nullptr)) {}
  SkelPtr& operator=(SkelPtr&& o) noexcept {
    if (this != &o) {
      if (p) Destroy(p);
      p = std::exchange(o.p, nullptr);
    }
    return *this;
  }
  SkelPtr(const SkelPtr&) = delete;
  SkelPtr& operator=(const SkelPtr&) = delete;
  ~SkelPtr() {
    if (p) Destroy(p);
  }
  T* operator->() const { return p; }
};
using GenSkel = SkelPtr<fwd_gen_bpf, fwd_gen_bpf__destroy>;
using SinkSkel = SkelPtr<fwd_sink_bpf, fwd_sink_bpf__destroy>;
using TrivialSkel = SkelPtr<fwd_trivial_bpf, fwd_trivial_bpf__destroy>;
using ProbeSkel = SkelPtr<fwd_probe_bpf, fwd_probe_bpf__destroy>;

int ncpus() {
  static int n = libbpf_num_possible_cpus();
  return n;
}

// Sum over CPUs of a per-CPU array of fb_count at key 0.
Result<fb_count> read_count(int map_fd) {
  std::vector<fb_count> v(ncpus());
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(map_fd, &zero, v.data()) != 0) return sys_error("read sink counter");
  fb_count sum{};
  for (const auto& c : v) {
    sum.packets += c.packets;
    sum.bytes += c.bytes;
  }
  return sum;
}

// A counting sink on one interface: XDP (drop) or TC ingress (shot).
class Sink {
 public:
  // Attaches in the current network namespace.
  static Result<std::unique_ptr<Sink>> attach(const std::string& ifname, bool tc,
                                              const std::string& where) {
    std::unique_ptr<Sink> s(new Sink());
    auto ifc = iface(ifname);
    if (!ifc) return ifc.error();
    s->skel_ = SinkSkel(fwd_sink_bpf__open_and_load());
    if (!s->skel_.p) return sys_error("load fwd_sink");
    if (!tc) {
      auto l = attach_xdp(bpf_program__fd(s->skel_->progs.sink_xdp), ifc->ifindex,
                          ifname + " in " + where);
      if (!l) return l.error();
      s->link_ = std::move(*l);
      return s;
    }
    s->tc_hook_ = bpf_tc_hook{
        .sz = sizeof(bpf_tc_hook), .ifindex = ifc->ifindex, .attach_point = BPF_TC_INGRESS};
    int err = bpf_tc_hook_create(&s->tc_hook_);
    if (err && err != -EEXIST) return sys_error("create clsact on " + ifname + " in " + where, err);
    s->tc_created_ = true;
    s->where_ = where;
    LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = bpf_program__fd(s->skel_->progs.sink_tc));
    err = bpf_tc_attach(&s->tc_hook_, &o);
    if (err) return sys_error("attach TC sink to " + ifname + " in " + where, err);
    return s;
  }
  // The TC hook lives in another namespace: detach_tc() must run inside it.
  bool needs_ns_for_detach() const { return tc_created_; }
  const std::string& where() const { return where_; }
  void detach_tc() {
    if (!tc_created_) return;
    tc_hook_.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    bpf_tc_hook_destroy(&tc_hook_);  // removes the clsact qdisc and its filters
    tc_created_ = false;
  }
  Result<fb_count> count() const { return read_count(bpf_map__fd(skel_->maps.counts)); }
  fb_sample sample() const { return skel_->bss->sample; }

 private:
  Sink() = default;
  SinkSkel skel_;
  UniqueFd link_;
  bpf_tc_hook tc_hook_{};
  bool tc_created_ = false;
  std::string where_;
};

// ---------------------------------------------------------------------------------------
// Checksums and the generator's template

// One's-complement sum of native 16-bit words: independent of byte order, so a sum over
// wire bytes read natively, folded and inverted, is stored back natively as the checksum.
uint32_t sum16(const uint8_t* p, size_t len) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < len; i += 2) {
    uint16_t w;
    std::memcpy(&w, p + i, 2);
    s += w;
  }
  return s;
}
uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

struct GenSpec {
  bool udp = true;
  uint8_t dmac[6], smac[6];
  uint32_t saddr_base;  // host order
  uint32_t daddr;       // wire order
  uint16_t dport;       // host order
  uint16_t sport_base;  // host order
  uint32_t sources, ports;
};

// Writes the template frame (saddr, sport and checksums zero) and its partial sums.
void build_template(const GenSpec& g, uint8_t* f, uint32_t* ip_sum, uint32_t* l4_sum) {
  std::memset(f, 0, 64);
  std::memcpy(f, g.dmac, 6);
  std::memcpy(f + 6, g.smac, 6);
  f[12] = 0x08;  // ETH_P_IP
  f[13] = 0x00;
  uint8_t* ip = f + FB_OFF_IP;
  const uint16_t ip_len = FB_FRAME_LEN - FB_OFF_IP;
  const uint16_t l4_len = ip_len - 20;
  ip[0] = 0x45;
  ip[2] = ip_len >> 8;
  ip[3] = ip_len & 0xff;
  ip[6] = 0x40;  // DF
  ip[8] = 64;    // TTL
  ip[9] = g.udp ? IPPROTO_UDP : IPPROTO_TCP;
  std::memcpy(ip + 16, &g.daddr, 4);
  uint8_t* l4 = f + FB_OFF_L4;
  l4[2] = g.dport >> 8;
  l4[3] = g.dport & 0xff;
  size_t hdr;
  if (g.udp) {
    l4[4] = l4_len >> 8;
    l4[5] = l4_len & 0xff;
    hdr = 8;
  } else {
    l4[7] = 1;      // seq 1
    l4[11] = 1;     // ack_seq 1
    l4[12] = 0x50;  // doff 5
    l4[13] = 0x10;  // ACK: an established flow's segment, never a SYN
    l4[14] = 0xff;  // window 65535
    l4[15] = 0xff;
    hdr = 20;
  }
  for (size_t i = FB_OFF_L4 + hdr; i < FB_FRAME_LEN; ++i) f[i] = 'x';
  *ip_sum = sum16(ip, 20);
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo + 4, &g.daddr, 4);
  pseudo[9] = ip[9];
  pseudo[10] = l4_len >> 8;
  pseudo[11] = l4_len & 0xff;
  *l4_sum = sum16(pseudo, sizeof(pseudo)) + sum16(l4, l4_len);
}

// Verifies a generated frame: IPv4 header and L4 checksums over the real bytes.
Status check_frame(const uint8_t* f, bool udp) {
  const uint8_t* ip = f + FB_OFF_IP;
  if (fold(sum16(ip, 20)) != 0xffff) return Error{0, "generator self-check: bad IPv4 checksum"};
  const uint16_t l4_len = FB_FRAME_LEN - FB_OFF_L4;
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, ip + 12, 8);
  pseudo[9] = ip[9];
  pseudo[10] = l4_len >> 8;
  pseudo[11] = l4_len & 0xff;
  if (fold(sum16(pseudo, 12) + sum16(f + FB_OFF_L4, l4_len)) != 0xffff)
    return Error{0,
                 std::string("generator self-check: bad ") + (udp ? "UDP" : "TCP") + " checksum"};
  return {};
}

// ---------------------------------------------------------------------------------------
// CPU accounting

struct StatCpu {
  uint64_t user = 0, system = 0, idle = 0, irq = 0, softirq = 0, steal = 0;  // USER_HZ ticks
};

// /proc/stat lines "cpuN ...", indexed by N.
std::vector<StatCpu> read_proc_stat() {
  std::vector<StatCpu> out(ncpus());
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    unsigned cpu;
    unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
    if (std::sscanf(line.c_str(), "cpu%u %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user,
                    &nice, &sys, &idle, &iowait, &irq, &softirq, &steal) == 9 &&
        cpu < out.size())
      out[cpu] = {user + nice, sys, idle + iowait, irq, softirq, steal};
  }
  return out;
}

struct ProbeSnap {
  std::vector<fb_softirq> per_cpu;
  std::vector<fb_napi> napi;  // per CPU
  uint64_t xdp_errors[FB_XDP_ERR_MAX] = {};
};

Result<ProbeSnap> read_probe(fwd_probe_bpf* p) {
  ProbeSnap s;
  s.per_cpu.resize(ncpus());
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(p->maps.softirq), &zero, s.per_cpu.data()) != 0)
    return sys_error("read softirq probe");
  s.napi.resize(ncpus());
  if (bpf_map_lookup_elem(bpf_map__fd(p->maps.napi), &zero, s.napi.data()) != 0)
    return sys_error("read NAPI probe");
  std::vector<uint64_t> v(ncpus());
  for (uint32_t i = 0; i < FB_XDP_ERR_MAX; ++i) {
    if (bpf_map_lookup_elem(bpf_map__fd(p->maps.xdp_errors), &i, v.data()) != 0)
      return sys_error("read xdp error counters");
    for (uint64_t x : v) s.xdp_errors[i] += x;
  }
  return s;
}

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::string fmt_sample(const fb_sample& s) {
  char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &s.saddr, a, sizeof(a));
  inet_ntop(AF_INET, &s.daddr, b, sizeof(b));
  return std::string(s.proto == IPPROTO_TCP   ? "tcp "
                     : s.proto == IPPROTO_UDP ? "udp "
                                              : "? ") +
         a + ":" + std::to_string(ntohs(s.sport)) + " > " + b + ":" +
         std::to_string(ntohs(s.dport));
}

// ---------------------------------------------------------------------------------------
// measure

struct MeasureOpts {
  std::string label;
  std::string client_ns, lb_ns;
  std::vector<std::string> backend_ns;
  std::string client_if = "c0", lb_if = "lc", backend_if = "eth0";
  std::vector<std::string> lb_out_ifs = {"lb1", "lb2", "lb3"};
  std::string lc = "none";  // none | trivial | drop
  bool tc_sink = false;
  bool udp = true;
  std::string dst, src_base = "198.18.0.100";
  uint16_t dport = 0, sport_base = 10000;
  uint32_t sources = 32, ports = 64;
  double seconds = 2.0;
  int cpu = 1;
  uint32_t warmup = 300000;
  uint32_t batch = 0;  // 0: the kernel's default (64)
  int nice = -20;      // the VM is shared: outweigh other tasks on the generator's CPU
  int probe_copies = 1;
};

// ---------------------------------------------------------------------------------------
// Generators. The fast one runs gen.bpf.c through BPF_PROG_TEST_RUN with live frames; some
// kernel builds refuse that (EPERM), and then the same frames go out of an AF_PACKET socket
// instead: slower, so the rates it yields are bounded by the generator, not the LB.

class Generator {
 public:
  virtual ~Generator() = default;
  // Sends `count` frames, or fewer if `max_s` seconds pass first (where the generator can
  // stop early); returns the number the client's veth accepted. Called in the client's
  // network namespace.
  virtual Result<uint64_t> run(uint64_t count, double max_s) = 0;
};

class LiveFramesGen : public Generator {
 public:
  LiveFramesGen(GenSkel skel, int ifindex, uint32_t batch, const uint8_t* frame)
      : skel_(std::move(skel)), ifindex_(ifindex), batch_(batch) {
    std::memcpy(frame_, frame, sizeof(frame_));
  }
  // A test run cannot stop early: max_s is only met through `count` (sized from a warm-up).
  Result<uint64_t> run(uint64_t count, double /*max_s*/) override {
    xdp_md ctx{};
    ctx.data_end = FB_FRAME_LEN;
    ctx.ingress_ifindex = ifindex_;
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame_, .data_size_in = FB_FRAME_LEN,
                .ctx_in = &ctx, .ctx_size_in = sizeof(ctx),
                .repeat = static_cast<int>(std::min<uint64_t>(count, 0x7fffffff)),
                .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch_);
    const uint64_t seq0 = skel_->bss->seq;
    if (bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.gen), &o) != 0)
      return sys_error("BPF_PROG_TEST_RUN (live frames) of the generator");
    return skel_->bss->seq - seq0;
  }

 private:
  GenSkel skel_;
  int ifindex_;
  uint32_t batch_;
  uint8_t frame_[64];
};

// Loads gen.bpf.c for `g` and checks its output for a few sequence numbers (a test run
// without live frames).
Result<std::unique_ptr<Generator>> live_frames_gen(const GenSpec& g, int ifindex, uint32_t batch) {
  GenSkel gen(fwd_gen_bpf__open());
  if (!gen.p) return sys_error("open fwd_gen");
  uint8_t frame[64];
  uint32_t ip_sum, l4_sum;
  build_template(g, frame, &ip_sum, &l4_sum);
  auto* ro = gen->rodata;
  std::memcpy(ro->tmpl, frame, sizeof(frame));
  ro->saddr_base = g.saddr_base;
  ro->src_mask = g.sources - 1;
  ro->src_shift = static_cast<uint32_t>(__builtin_ctz(g.sources));
  ro->port_mask = g.ports - 1;
  ro->sport_base = g.sport_base;
  ro->l4_csum_off = g.udp ? FB_OFF_UDP_CSUM : FB_OFF_TCP_CSUM;
  ro->ip_sum_base = ip_sum;
  ro->l4_sum_base = l4_sum;
  ro->is_udp = g.udp;
  if (int err = fwd_gen_bpf__load(gen.p)) return sys_error("load fwd_gen", err);
  for (int i = 0; i < 3; ++i) {
    uint8_t out[128];
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_out = out,
                .data_size_in = FB_FRAME_LEN, .data_size_out = sizeof(out), .repeat = 1);
    if (bpf_prog_test_run_opts(bpf_program__fd(gen->progs.gen), &o) != 0)
      return sys_error("generator self-check run");
    if (o.retval != XDP_TX || o.data_size_out != FB_FRAME_LEN)
      return Error{0, "generator self-check: unexpected verdict or length"};
    if (auto s = check_frame(out, g.udp); !s) return s.error();
    gen->bss->seq += 997;  // another source and port
  }
  gen->bss->seq = 0;
  return std::unique_ptr<Generator>(new LiveFramesGen(std::move(gen), ifindex, batch, frame));
}

// The fallback: the frames gen.bpf.c would write (same sources and ports, same order), built
// up front, one per flow, and sent in batches through an AF_PACKET socket on the client's
// veth. They enter the LB's veth like the live frames do, through the veth pair.
class PacketGen : public Generator {
 public:
  // Creates the socket in the current network namespace (the client's).
  static Result<std::unique_ptr<Generator>> create(const GenSpec& g, int ifindex) {
    std::unique_ptr<PacketGen> p(new PacketGen());
    p->fd_ = UniqueFd(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));  // 0: receives nothing
    if (!p->fd_.valid()) return sys_error("AF_PACKET socket for the fallback generator");
    // Straight to the veth's xmit, as the live frames are; a qdisc would only add cost.
    int one = 1;
    setsockopt(p->fd_.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    p->to_.sll_family = AF_PACKET;
    p->to_.sll_protocol = htons(ETH_P_IP);
    p->to_.sll_ifindex = ifindex;
    uint8_t tmpl[64];
    uint32_t ip_sum, l4_sum;
    build_template(g, tmpl, &ip_sum, &l4_sum);
    const uint32_t flows = g.sources * g.ports;
    p->frames_.resize(size_t{flows} * FB_FRAME_LEN);
    for (uint32_t n = 0; n < flows; ++n) {
      uint8_t* f = &p->frames_[size_t{n} * FB_FRAME_LEN];
      patch_frame(g, tmpl, ip_sum, l4_sum, n, f);
      if (auto s = check_frame(f, g.udp); !s) return s.error();
    }
    return std::unique_ptr<Generator>(std::move(p));
  }

  Result<uint64_t> run(uint64_t count, double max_s) override {
    constexpr unsigned kBatch = 64;
    const size_t flows = frames_.size() / FB_FRAME_LEN;
    iovec iov[kBatch];
    mmsghdr msgs[kBatch] = {};
    const double deadline = now_s() + max_s;
    uint64_t sent = 0;
    for (uint64_t tries = 0; tries < count; tries += kBatch) {
      if (now_s() >= deadline) break;
      const unsigned n = static_cast<unsigned>(std::min<uint64_t>(kBatch, count - tries));
      for (unsigned i = 0; i < n; ++i) {
        iov[i] = {&frames_[(seq_ + i) % flows * FB_FRAME_LEN], FB_FRAME_LEN};
        msgs[i].msg_hdr.msg_name = &to_;
        msgs[i].msg_hdr.msg_namelen = sizeof(to_);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int r = sendmmsg(fd_.get(), msgs, n, 0);
      // ENOBUFS: the LB's veth ring was full and the frame was dropped: not generated.
      if (r < 0 && errno != ENOBUFS && errno != EAGAIN)
        return sys_error("send on the fallback generator's AF_PACKET socket");
      const unsigned ok = r < 0 ? 0 : static_cast<unsigned>(r);
      sent += ok;
      seq_ += ok;
    }
    return sent;
  }

 private:
  PacketGen() = default;
  // gen.bpf.c's per-packet fields for sequence number n, in userspace.
  static void patch_frame(const GenSpec& g, const uint8_t* tmpl, uint32_t ip_sum, uint32_t l4_sum,
                          uint32_t n, uint8_t* f) {
    std::memcpy(f, tmpl, FB_FRAME_LEN);
    const uint32_t src_shift = static_cast<uint32_t>(__builtin_ctz(g.sources));
    const uint32_t saddr = htonl(g.saddr_base + (n & (g.sources - 1)));
    const uint16_t sport = htons(g.sport_base + ((n >> src_shift) & (g.ports - 1)));
    std::memcpy(f + FB_OFF_SADDR, &saddr, 4);
    std::memcpy(f + FB_OFF_L4, &sport, 2);
    const uint32_t s = (saddr & 0xffff) + (saddr >> 16);
    const uint16_t ip_csum = static_cast<uint16_t>(~fold(ip_sum + s));
    uint16_t l4_csum = static_cast<uint16_t>(~fold(l4_sum + s + sport));
    if (g.udp && l4_csum == 0) l4_csum = 0xffff;  // UDP: 0 means "no checksum"
    std::memcpy(f + FB_OFF_IP_CSUM, &ip_csum, 2);
    std::memcpy(f + (g.udp ? FB_OFF_UDP_CSUM : FB_OFF_TCP_CSUM), &l4_csum, 2);
  }

  UniqueFd fd_;
  sockaddr_ll to_{};
  std::vector<uint8_t> frames_;
  uint64_t seq_ = 0;
};

// The fields fwd_probe measures, from its snapshots before (pb) and after (pa) the run;
// dpk = delivered packets (NAN if none).
void add_probe_fields(json& j, int gen_cpu, const ProbeSnap& pb, const ProbeSnap& pa, double dpk,
                      double wall) {
  const unsigned cpu = static_cast<unsigned>(gen_cpu);
  // Sums over CPUs of (after - before) of a field; `only` restricts to one CPU.
  auto napi_delta = [&](__u64 fb_napi::*fld, int only = -1) {
    double sum = 0;
    for (int c = 0; c < ncpus(); ++c)
      if (only < 0 || c == only) sum += static_cast<double>(pa.napi[c].*fld - pb.napi[c].*fld);
    return sum;
  };
  const double netrx_cpu = static_cast<double>(pa.per_cpu[cpu].total_ns[FB_NET_RX_SOFTIRQ] -
                                               pb.per_cpu[cpu].total_ns[FB_NET_RX_SOFTIRQ]);
  double softirq_all_vec_cpu = 0;
  for (int v = 0; v < FB_NR_SOFTIRQS; ++v)
    softirq_all_vec_cpu += pa.per_cpu[cpu].total_ns[v] - pb.per_cpu[cpu].total_ns[v];
  const double lb_ns = napi_delta(&fb_napi::lb_ns);
  const double be_ns = napi_delta(&fb_napi::backend_ns);
  const double ours_on_cpu =
      napi_delta(&fb_napi::lb_ns, gen_cpu) + napi_delta(&fb_napi::backend_ns, gen_cpu);
  j["netrx_ns_gen_cpu"] = netrx_cpu;
  j["softirq_ns_gen_cpu_all_vectors"] = softirq_all_vec_cpu;
  j["lb_poll_ns"] = lb_ns;
  j["lb_polls"] = napi_delta(&fb_napi::lb_polls);
  j["lb_poll_work"] = napi_delta(&fb_napi::lb_work);
  j["backend_poll_ns"] = be_ns;
  j["backend_poll_work"] = napi_delta(&fb_napi::backend_work);
  j["backend_polls"] = napi_delta(&fb_napi::backend_polls);
  j["backlog_poll_ns"] = napi_delta(&fb_napi::backlog_ns);
  j["backlog_polls"] = napi_delta(&fb_napi::backlog_polls);
  j["netrx_runs_gen_cpu"] = static_cast<double>(pa.per_cpu[cpu].runs[FB_NET_RX_SOFTIRQ] -
                                                pb.per_cpu[cpu].runs[FB_NET_RX_SOFTIRQ]);
  j["foreign_poll_ns_gen_cpu"] = napi_delta(&fb_napi::foreign_ns, gen_cpu);
  j["foreign_polls_gen_cpu"] = napi_delta(&fb_napi::foreign_polls, gen_cpu);
  // Our polls that ran on another CPU (NAPI scheduled there): should be ~0.
  j["ours_off_cpu_share"] = lb_ns + be_ns > 0 ? 1 - ours_on_cpu / (lb_ns + be_ns) : 0;
  j["lb_ns_per_pkt"] = lb_ns / dpk;       // the LB's own NAPI work per packet
  j["backend_ns_per_pkt"] = be_ns / dpk;  // the backends' veth polls (sinks)
  j["ns_per_pkt"] = netrx_cpu / dpk;      // all NET_RX softirq on the LB's (= generator's) CPU
  j["netrx_share_of_core"] = netrx_cpu / (wall * 1e9);
  j["xdp_exceptions"] = pa.xdp_errors[FB_XDP_EXCEPTION] - pb.xdp_errors[FB_XDP_EXCEPTION];
  j["xdp_redirect_errors"] =
      pa.xdp_errors[FB_XDP_REDIRECT_ERR] - pb.xdp_errors[FB_XDP_REDIRECT_ERR];
}

Result<uint32_t> netns_ino(const std::string& ns) {
  struct stat st {};
  if (stat(("/run/netns/" + ns).c_str(), &st) != 0) return sys_error("stat /run/netns/" + ns);
  return static_cast<uint32_t>(st.st_ino);
}

// What fwd_probe tells apart (its rodata): the LB's device and the namespaces it lives in.
struct ProbeTarget {
  uint32_t lb_ifindex;
  uint32_t lb_netns_ino;
  std::vector<uint32_t> backend_netns_ino;
};

// Loads and attaches fwd_probe. Some kernel builds refuse its tp_btf programs (EPERM at
// load): the caller then measures without CPU figures rather than not at all.
Result<ProbeSkel> load_probe(const ProbeTarget& t) {
  ProbeSkel probe(fwd_probe_bpf__open());
  if (!probe.p) return sys_error("open fwd_probe");
  probe->rodata->lb_ifindex = t.lb_ifindex;
  probe->rodata->lb_netns_ino = t.lb_netns_ino;
  for (size_t i = 0; i < t.backend_netns_ino.size(); ++i)
    probe->rodata->backend_netns_ino[i] = t.backend_netns_ino[i];
  if (int err = fwd_probe_bpf__load(probe.p)) return sys_error("load fwd_probe", err);
  if (int err = fwd_probe_bpf__attach(probe.p)) return sys_error("attach fwd_probe", err);
  return probe;
}

Status measure(const MeasureOpts& mo) {
  auto sw = NetnsSwitch::create();
  if (!sw) return sw.error();
  if (mo.backend_ns.size() > FB_MAX_TARGETS || mo.backend_ns.empty() ||
      mo.lb_out_ifs.size() < mo.backend_ns.size())
    return Error{EINVAL, "need 1.." + std::to_string(FB_MAX_TARGETS) +
                             " backends and one LB-side interface per backend"};
  if (mo.sources == 0 || (mo.sources & (mo.sources - 1)) || mo.ports == 0 ||
      (mo.ports & (mo.ports - 1)))
    return Error{EINVAL, "--sources and --ports must be powers of two"};

  // Sinks, one per backend. Destroyed (detached) before `sw` goes home: declared after it.
  std::vector<std::unique_ptr<Sink>> sinks;
  std::vector<Iface> backend_if;
  auto detach_all = [&]() {
    for (size_t i = 0; i < sinks.size(); ++i) {
      if (sinks[i] && sinks[i]->needs_ns_for_detach() && sw->enter(sinks[i]->where())) {
        sinks[i]->detach_tc();
        sw->home();
      }
    }
  };
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{detach_all};

  for (const std::string& ns : mo.backend_ns) {
    if (auto s = sw->enter(ns); !s) return s;
    auto ifc = iface(mo.backend_if);
    auto sink = Sink::attach(mo.backend_if, mo.tc_sink, ns);
    sw->home();
    if (!ifc) return ifc.error();
    if (!sink) return sink.error();
    backend_if.push_back(*ifc);
    sinks.push_back(std::move(*sink));
  }

  // The LB side: MACs and, optionally, the program on lc.
  if (auto s = sw->enter(mo.lb_ns); !s) return s;
  auto lc = iface(mo.lb_if);
  std::vector<Iface> outs;
  for (size_t i = 0; i < mo.backend_ns.size() && lc; ++i) {
    auto o = iface(mo.lb_out_ifs[i]);
    if (!o) {
      sw->home();
      return o.error();
    }
    outs.push_back(*o);
  }
  if (!lc) {
    sw->home();
    return lc.error();
  }
  TrivialSkel trivial;
  UniqueFd lc_link;
  std::unique_ptr<Sink> lc_sink;
  Status lb_status;
  if (mo.lc == "trivial" || mo.lc == "fib") {
    trivial = TrivialSkel(fwd_trivial_bpf__open());
    if (!trivial.p) {
      lb_status = sys_error("open fwd_trivial");
    } else {
      for (size_t i = 0; i < outs.size(); ++i) {
        fb_target* t = &trivial->rodata->targets[i];
        std::memcpy(t->dmac, backend_if[i].mac, 6);
        std::memcpy(t->smac, outs[i].mac, 6);
        // Backend N is 198.18.N.2 in the topology (run.sh).
        t->addr = htonl((198u << 24) | (18u << 16) | ((i + 1) << 8) | 2u);
      }
      trivial->rodata->ntargets = static_cast<uint32_t>(outs.size());
      if (int err = fwd_trivial_bpf__load(trivial.p)) {
        lb_status = sys_error("load fwd_trivial", err);
      } else {
        // The devmap resolves ifindexes in the updater's namespace: we are in the LB's.
        for (uint32_t i = 0; i < outs.size() && lb_status; ++i) {
          uint32_t ifx = static_cast<uint32_t>(outs[i].ifindex);
          if (bpf_map_update_elem(bpf_map__fd(trivial->maps.tx), &i, &ifx, BPF_ANY) != 0 ||
              bpf_map_update_elem(bpf_map__fd(trivial->maps.tx_ifindex), &ifx, &ifx, BPF_ANY))
            lb_status = sys_error("fill the trivial forwarder's devmaps");
        }
        if (lb_status) {
          bpf_program* prog = mo.lc == "fib" ? trivial->progs.fwd_fib : trivial->progs.fwd_trivial;
          auto l = attach_xdp(bpf_program__fd(prog), lc->ifindex, mo.lb_if + " in " + mo.lb_ns);
          if (l)
            lc_link = std::move(*l);
          else
            lb_status = l.error();
        }
      }
    }
  } else if (mo.lc == "drop") {
    auto s = Sink::attach(mo.lb_if, false, mo.lb_ns);
    if (s)
      lc_sink = std::move(*s);
    else
      lb_status = s.error();
  } else if (mo.lc != "none") {
    lb_status = Error{EINVAL, "--lc must be none, trivial, fib or drop"};
  }
  sw->home();
  if (!lb_status) return lb_status;

  // The generator, in the client namespace.
  if (auto s = sw->enter(mo.client_ns); !s) return s;
  auto c0 = iface(mo.client_if);
  sw->home();
  if (!c0) return c0.error();

  GenSpec g{};
  g.udp = mo.udp;
  std::memcpy(g.dmac, lc->mac, 6);
  std::memcpy(g.smac, c0->mac, 6);
  in_addr a{};
  if (inet_pton(AF_INET, mo.src_base.c_str(), &a) != 1)
    return Error{EINVAL, "bad --src-base " + mo.src_base};
  g.saddr_base = ntohl(a.s_addr);
  if (inet_pton(AF_INET, mo.dst.c_str(), &a) != 1) return Error{EINVAL, "bad --dst " + mo.dst};
  g.daddr = a.s_addr;
  g.dport = mo.dport;
  g.sport_base = mo.sport_base;
  g.sources = mo.sources;
  g.ports = mo.ports;

  // Loaded before the CPU is pinned; its warm-up below tells whether live frames work here.
  auto live = live_frames_gen(g, c0->ifindex, mo.batch);

  ProbeTarget pt{static_cast<uint32_t>(lc->ifindex), 0, {}};
  auto lb_ino = netns_ino(mo.lb_ns);
  if (!lb_ino) return lb_ino.error();
  pt.lb_netns_ino = *lb_ino;
  for (const std::string& ns : mo.backend_ns) {
    auto ino = netns_ino(ns);
    if (!ino) return ino.error();
    pt.backend_netns_ino.push_back(*ino);
  }
  json notes = json::array();
  ProbeSkel probe;
  std::vector<ProbeSkel> extra_probes;
  if (auto p = load_probe(pt); p) {
    probe = std::move(*p);
    // --probe-copies N > 1 attaches N - 1 more, unread copies: the difference it makes
    // measures the probe's own cost (see docs/benchmarks.md).
    for (int i = 1; i < mo.probe_copies; ++i) {
      ProbeSkel x(fwd_probe_bpf__open_and_load());
      if (!x.p) return sys_error("load an extra fwd_probe");
      if (int err = fwd_probe_bpf__attach(x.p)) return sys_error("attach an extra fwd_probe", err);
      extra_probes.push_back(std::move(x));
    }
  } else {
    const Error& e = p.error();
    notes.push_back(
        "CPU probe unavailable: " + (e.code ? std::string(std::strerror(e.code)) : e.message) +
        ": tp_btf refused by this kernel (" + e.message + "); only delivered packets are reported");
  }

  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(mo.cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    return sys_error("pin to CPU " + std::to_string(mo.cpu));
  // Generator and LB share this CPU; other tasks on it would steal from both. nice -20 has
  // ~88x the weight of a nice-0 task under the fair scheduler, without starving anyone.
  // pps still depends on what else runs on the VM; the CPU figure (time in softirq per
  // packet) does not, apart from cache effects.
  // With autogroups, nice only ranks tasks inside one session's group and every group weighs
  // the same: run in a session (group) of our own and give the group the nice value too.
  if (setsid() < 0 && errno != EPERM) return sys_error("setsid");
  if (FILE* ag = std::fopen("/proc/self/autogroup", "w")) {
    std::fprintf(ag, "%d", mo.nice);
    std::fclose(ag);
  }
  if (setpriority(PRIO_PROCESS, 0, mo.nice) != 0) return sys_error("setpriority");

  if (auto s = sw->enter(mo.client_ns); !s) return s;
  // Warm-up: creates TCP conntrack entries (first packet of each flow), resolves nothing
  // new (neighbours are permanent), and measures the rate to size the measured run.
  double t0 = now_s();
  std::unique_ptr<Generator> gen;
  Result<uint64_t> warm =
      live ? (*live)->run(mo.warmup, mo.seconds) : Result<uint64_t>(live.error());
  if (live) gen = std::move(*live);
  const bool live_frames = warm.ok();
  if (!live_frames) {
    // No live frames on this kernel: the slower generator, and a note that says so.
    const Error& e = warm.error();
    notes.push_back("Fallback generator (AF_PACKET on " + mo.client_if +
                    "): live-frames test runs refused: " +
                    (e.code ? std::string(std::strerror(e.code)) : e.message) +
                    "; rates are generator-bound and not comparable with the live-frames figures");
    auto pg = PacketGen::create(g, c0->ifindex);
    if (!pg) {
      sw->home();
      return pg.error();
    }
    gen = std::move(*pg);
    t0 = now_s();
    warm = gen->run(mo.warmup, mo.seconds);
    if (!warm) {
      sw->home();
      return warm.error();
    }
  }
  double warm_s = now_s() - t0;
  double rate = static_cast<double>(*warm) / std::max(warm_s, 1e-3);
  uint64_t repeat =
      std::clamp<uint64_t>(static_cast<uint64_t>(rate * mo.seconds), 100000, 0x7fffffff);

  std::vector<fb_count> before_sink;
  for (auto& s : sinks) {
    auto c = s->count();
    if (!c) {
      sw->home();
      return c.error();
    }
    before_sink.push_back(*c);
  }
  fb_count before_lc{};
  if (lc_sink) before_lc = *lc_sink->count();
  Result<ProbeSnap> pb = probe.p ? read_probe(probe.p) : ProbeSnap{};
  auto stat0 = read_proc_stat();
  t0 = now_s();
  Result<uint64_t> sent = gen->run(repeat, mo.seconds);
  double wall = now_s() - t0;
  auto stat1 = read_proc_stat();
  Result<ProbeSnap> pa = probe.p ? read_probe(probe.p) : ProbeSnap{};
  sw->home();
  if (!sent) return sent.error();
  if (!pb) return pb.error();
  if (!pa) return pa.error();
  const uint64_t generated = *sent;

  json j;
  j["label"] = mo.label;
  j["proto"] = mo.udp ? "udp" : "tcp";
  j["dst"] = mo.dst + ":" + std::to_string(mo.dport);
  j["lc"] = mo.lc;
  j["sink"] = mo.tc_sink ? "tc" : "xdp";
  j["flows"] = mo.sources * mo.ports;
  j["cpu"] = mo.cpu;
  j["generator"] = live_frames ? "live-frames" : "af_packet";
  j["notes"] = notes;
  j["generated"] = generated;
  j["seconds"] = wall;
  uint64_t delivered = 0;
  json per = json::array(), samples = json::array();
  for (size_t i = 0; i < sinks.size(); ++i) {
    auto c = sinks[i]->count();
    if (!c) return c.error();
    uint64_t d = c->packets - before_sink[i].packets;
    per.push_back(d);
    delivered += d;
    if (d) samples.push_back(fmt_sample(sinks[i]->sample()));
  }
  if (lc_sink) {  // the floor run: frames end at lc
    auto c = lc_sink->count();
    if (!c) return c.error();
    delivered = c->packets - before_lc.packets;
    samples.push_back(fmt_sample(lc_sink->sample()));
  }
  j["delivered"] = delivered;
  j["per_backend"] = per;
  j["samples"] = samples;
  j["pps"] = delivered / wall;

  const unsigned cpu = static_cast<unsigned>(mo.cpu);
  const double dpk = delivered ? static_cast<double>(delivered) : NAN;
  // Without the probe these fields are absent, and the report shows n/a for them.
  if (probe.p) add_probe_fields(j, mo.cpu, *pb, *pa, dpk, wall);
  const double tick_ns = 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const double st_soft = (stat1[cpu].softirq - stat0[cpu].softirq) * tick_ns;
  const double st_sys = (stat1[cpu].system - stat0[cpu].system) * tick_ns;
  j["stat_softirq_ns_per_pkt"] = st_soft / dpk;  // cross-check, tick-sampled
  j["stat_system_ns_per_pkt"] = st_sys / static_cast<double>(generated);  // the generator
  // Where the generator CPU's time went (tick-sampled shares of the run).
  auto share = [&](uint64_t StatCpu::*f) {
    return (stat1[cpu].*f - stat0[cpu].*f) * tick_ns / (wall * 1e9);
  };
  j["gen_cpu_shares"] = {{"user", share(&StatCpu::user)},       {"system", share(&StatCpu::system)},
                         {"idle", share(&StatCpu::idle)},       {"irq", share(&StatCpu::irq)},
                         {"softirq", share(&StatCpu::softirq)}, {"steal", share(&StatCpu::steal)}};
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
  return {};
}

// ---------------------------------------------------------------------------------------
// report

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string f(const char* fmt, ...) {
  char buf[128];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

// f() for a figure that may be missing (NAN: no CPU probe in those runs).
std::string num(const char* fmt, double x) { return std::isnan(x) ? "n/a" : f(fmt, x); }

// Prints three Markdown tables: the headline (pps and the LB's CPU per packet, with ratios to
// the baseline), the details of the CPU accounting, and the two targets.
Status report(const std::string& path, const std::string& baseline, const std::string& nft) {
  std::ifstream in(path);
  if (!in) return sys_error("open " + path);
  std::vector<std::string> order, notes;
  std::map<std::string, std::vector<json>> runs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    for (const json& n : j.value("notes", json::array()))
      if (std::find(notes.begin(), notes.end(), n.get<std::string>()) == notes.end())
        notes.push_back(n.get<std::string>());
    std::string l = j.value("label", "?");
    if (!runs.count(l)) order.push_back(l);
    runs[l].push_back(j);
  }
  auto col = [&](const std::string& l, const char* key) {
    std::vector<double> v;
    for (const json& j : runs[l])
      if (j.contains(key) && j[key].is_number()) v.push_back(j[key].get<double>());
    return v;
  };
  auto med = [&](const std::string& l, const char* key) { return median(col(l, key)); };
  // "median (min–max)"
  auto cell = [&](const std::string& l, const char* key, double scale, const char* fmt) {
    auto v = col(l, key);
    if (v.empty()) return std::string("n/a");
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return f(fmt, median(v) * scale) + " (" + f(fmt, *lo * scale) + "–" + f(fmt, *hi * scale) + ")";
  };
  if (!runs.count(baseline)) return Error{EINVAL, "no runs labelled '" + baseline + "' in " + path};
  const double b_lb = med(baseline, "lb_ns_per_pkt");
  const double b_all = med(baseline, "ns_per_pkt");
  const double b_pps = med(baseline, "pps");
  const char* b = baseline.c_str();

  // The fallbacks these runs took (fwd_bench measure): what the figures below do not mean.
  for (const std::string& n : notes) std::printf("%s\n", n.c_str());
  if (!notes.empty()) std::printf("\n");
  std::printf(
      "| variant | runs | delivered Mpps | pps vs %s | LB CPU ns/pkt | LB CPU vs %s | "
      "LB CPU Δ vs %s (ns) | all NET_RX ns/pkt | all NET_RX vs %s |\n",
      b, b, b, b);
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& l : order) {
    std::printf("| %s | %zu | %s | %s | %s | %s | %s | %s | %s |\n", l.c_str(), runs[l].size(),
                cell(l, "pps", 1e-6, "%.2f").c_str(), num("%.2f×", med(l, "pps") / b_pps).c_str(),
                cell(l, "lb_ns_per_pkt", 1, "%.0f").c_str(),
                num("%.2f×", med(l, "lb_ns_per_pkt") / b_lb).c_str(),
                num("%+.0f", med(l, "lb_ns_per_pkt") - b_lb).c_str(),
                cell(l, "ns_per_pkt", 1, "%.0f").c_str(),
                num("%.2f×", med(l, "ns_per_pkt") / b_all).c_str());
  }

  std::printf("\nCPU accounting details (medians):\n\n");
  std::printf(
      "| variant | backends' veth polls ns/pkt | backlog polls ns/pkt | /proc/stat softirq "
      "ns/pkt (tick-sampled) | generator ns/pkt (system time) | NET_RX share of the "
      "core | other namespaces' polls ns/pkt | our polls off the generator's CPU (max) "
      "| lost | XDP errors |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& l : order) {
    const bool probed = !col(l, "lb_poll_ns").empty();
    std::vector<double> lost, off, errs, foreign, backlog;
    for (const json& j : runs[l]) {
      double g = j.value("generated", 0.0), d = j.value("delivered", 0.0);
      lost.push_back(g > 0 ? (g - d) / g : 0);
      off.push_back(j.value("ours_off_cpu_share", 0.0));
      foreign.push_back(j.value("foreign_poll_ns_gen_cpu", 0.0) / std::max(d, 1.0));
      backlog.push_back(j.value("backlog_poll_ns", 0.0) / std::max(d, 1.0));
      errs.push_back(j.value("xdp_exceptions", 0.0) + j.value("xdp_redirect_errors", 0.0));
    }
    std::printf(
        "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l.c_str(),
        num("%.0f", med(l, "backend_ns_per_pkt")).c_str(),
        num("%.0f", probed ? median(backlog) : NAN).c_str(),
        num("%.0f", med(l, "stat_softirq_ns_per_pkt")).c_str(),
        num("%.0f", med(l, "stat_system_ns_per_pkt")).c_str(),
        num("%.0f%%", 100 * med(l, "netrx_share_of_core")).c_str(),
        num("%.1f", probed ? median(foreign) : NAN).c_str(),
        num("%.1f%%", probed ? 100 * *std::max_element(off.begin(), off.end()) : NAN).c_str(),
        f("%.2f%%", 100 * median(lost)).c_str(),
        num("%.0f", probed ? *std::max_element(errs.begin(), errs.end()) : NAN).c_str());
  }

  std::printf("\nTargets (issue #2), on medians:\n\n");
  std::printf("| check | on LB CPU | on all NET_RX | target |\n|---|---:|---:|---|\n");
  auto verdict = [](double r, bool met) {
    return std::isnan(r) ? std::string("n/a") : f("%.2f× %s", r, met ? "met" : "missed");
  };
  for (const std::string& l : order) {
    if (l.rfind("sluice", 0) != 0) continue;
    double r1 = med(l, "lb_ns_per_pkt") / b_lb, r2 = med(l, "ns_per_pkt") / b_all;
    std::printf("| %s / %s | %s | %s | ≤ 1.2× |\n", l.c_str(), b, verdict(r1, r1 <= 1.2).c_str(),
                verdict(r2, r2 <= 1.2).c_str());
  }
  if (runs.count(nft)) {
    for (const std::string& l : order) {
      if (l.rfind("sluice", 0) != 0) continue;
      double r1 = med(nft, "lb_ns_per_pkt") / med(l, "lb_ns_per_pkt");
      double r2 = med(nft, "ns_per_pkt") / med(l, "ns_per_pkt");
      std::printf("| %s / %s | %s | %s | ≥ 5× |\n", nft.c_str(), l.c_str(),
                  verdict(r1, r1 >= 5).c_str(), verdict(r2, r2 >= 5).c_str());
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// main

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, sep))
    if (!x.empty()) out.push_back(x);
  return out;
}

int usage() {
  std::fprintf(
      stderr,
      "usage: fwd_bench measure --label L --client-ns NS --lb-ns NS --backend-ns A,B,C\n"
      "                         --dst IP --dport N [--proto udp|tcp] [--lc none|trivial|fib|drop]\n"
      "                         [--sink xdp|tc] [--seconds S] [--cpu C] [--sources N]\n"
      "                         [--ports N] [--src-base IP] [--sport-base N]\n"
      "                         [--warmup N] [--batch N] [--nice N] [--probe-copies N]\n"
      "       fwd_bench report FILE [--baseline LABEL] [--nft LABEL]\n");
  return 2;
}

int libbpf_quiet(enum libbpf_print_level level, const char* fmt, va_list args) {
  static const bool debug = std::getenv("FWD_BENCH_DEBUG") != nullptr;
  if (level == LIBBPF_DEBUG && !debug) return 0;
  return std::vfprintf(stderr, fmt, args);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  libbpf_set_print(libbpf_quiet);
  std::string cmd = argv[1];
  std::map<std::string, std::string> kv;
  std::vector<std::string> pos;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) {
      if (i + 1 >= argc) return usage();
      kv[a.substr(2)] = argv[++i];
    } else {
      pos.push_back(a);
    }
  }
  Status st;
  try {
    if (cmd == "report") {
      if (pos.size() != 1) return usage();
      st = report(pos[0], kv.count("baseline") ? kv["baseline"] : "trivial",
                  kv.count("nft") ? kv["nft"] : "nftables UDP DNAT");
    } else if (cmd == "measure") {
      MeasureOpts mo;
      for (const auto& [k, v] : kv) {
        if (k == "label")
          mo.label = v;
        else if (k == "client-ns")
          mo.client_ns = v;
        else if (k == "lb-ns")
          mo.lb_ns = v;
        else if (k == "backend-ns")
          mo.backend_ns = split(v, ',');
        else if (k == "lb-out-ifs")
          mo.lb_out_ifs = split(v, ',');
        else if (k == "lc")
          mo.lc = v;
        else if (k == "sink")
          mo.tc_sink = (v == "tc");
        else if (k == "proto")
          mo.udp = (v != "tcp");
        else if (k == "dst")
          mo.dst = v;
        else if (k == "dport")
          mo.dport = static_cast<uint16_t>(std::stoul(v));
        else if (k == "src-base")
          mo.src_base = v;
        else if (k == "sport-base")
          mo.sport_base = static_cast<uint16_t>(std::stoul(v));
        else if (k == "sources")
          mo.sources = static_cast<uint32_t>(std::stoul(v));
        else if (k == "ports")
          mo.ports = static_cast<uint32_t>(std::stoul(v));
        else if (k == "seconds")
          mo.seconds = std::stod(v);
        else if (k == "cpu")
          mo.cpu = std::stoi(v);
        else if (k == "warmup")
          mo.warmup = static_cast<uint32_t>(std::stoul(v));
        else if (k == "batch")
          mo.batch = static_cast<uint32_t>(std::stoul(v));
        else if (k == "nice")
          mo.nice = std::stoi(v);
        else if (k == "probe-copies")
          mo.probe_copies = std::stoi(v);
        else {
          std::fprintf(stderr, "fwd_bench: unknown option --%s\n", k.c_str());
          return usage();
        }
      }
      if (mo.label.empty() || mo.client_ns.empty() || mo.lb_ns.empty() || mo.backend_ns.empty() ||
          mo.dst.empty() || mo.dport == 0)
        return usage();
      st = measure(mo);
    } else {
      return usage();
    }
  } catch (const std::exception& e) {  // std::stoul and friends on bad arguments
    std::fprintf(stderr, "fwd_bench: bad argument: %s\n", e.what());
    return 2;
  }
  if (!st) {
    std::fprintf(stderr, "fwd_bench: %s\n", st.error().to_string().c_str());
    return 1;
  }
  return 0;
}
