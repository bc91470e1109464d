#include "packet.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace sluice::test {
namespace {

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmp6 = 58;
constexpr uint8_t kProtoNone6 = 59;
constexpr uint8_t kExtHopByHop = 0;
constexpr uint8_t kExtRouting = 43;
constexpr uint8_t kExtFragment = 44;
constexpr uint8_t kExtDestOpts = 60;

[[noreturn]] void die(const std::string& msg) {
  // A malformed builder call is a bug in the test table, not a packet case: stop loudly.
  std::fprintf(stderr, "packet builder: %s\n", msg.c_str());
  std::abort();
}

void put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}
void push16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void push32(Bytes& b, uint32_t v) {
  push16(b, static_cast<uint16_t>(v >> 16));
  push16(b, static_cast<uint16_t>(v));
}
uint16_t get16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}
uint32_t get32(const Bytes& b, size_t off) {
  return static_cast<uint32_t>(get16(b, off)) << 16 | get16(b, off + 2);
}

// Builder checksum: RFC 1071 over 16-bit big-endian words with the checksum field already
// zeroed by the caller; returns the value to store.
uint16_t builder_csum(const Bytes& pseudo, const Bytes& b, size_t off, size_t len) {
  uint32_t sum = 0;
  auto add = [&sum](const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    if (i < n) sum += static_cast<uint32_t>(p[i] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  };
  add(pseudo.data(), pseudo.size());
  add(b.data() + off, len);
  return static_cast<uint16_t>(~sum & 0xffff);
}

Bytes pad4(Bytes opts) {
  while (opts.size() % 4) opts.push_back(0);  // EOL
  return opts;
}

std::string ip_str(const Bytes& b, size_t off, bool v6) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, b.data() + off, buf, sizeof(buf));
  return buf;
}

std::string hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%04x", v);
  return buf;
}

}  // namespace

std::array<uint8_t, 6> parse_mac(std::string_view s) {
  std::array<uint8_t, 6> mac{};
  unsigned v[6];
  std::string str(s);
  if (std::sscanf(str.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) !=
      6) {
    die("bad MAC '" + str + "'");
  }
  for (int i = 0; i < 6; i++) mac[i] = static_cast<uint8_t>(v[i]);
  return mac;
}

Bytes parse_ip(std::string_view s) {
  std::string str(s);
  uint8_t buf[16];
  if (inet_pton(AF_INET, str.c_str(), buf) == 1) return Bytes(buf, buf + 4);
  if (inet_pton(AF_INET6, str.c_str(), buf) == 1) return Bytes(buf, buf + 16);
  die("bad IP address '" + str + "'");
}

// ---------------------------------------------------------------------------------------------
// Recording layers

Packet::Layer& Packet::last(Kind kind, const char* what) {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    if (it->kind == kind) return *it;
  }
  die(std::string(what) + " needs a preceding header of the right kind");
}

Packet::Layer* Packet::last_of(std::initializer_list<Kind> kinds) {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    for (Kind k : kinds) {
      if (it->kind == k) return &*it;
    }
  }
  return nullptr;
}

Packet::Layer& Packet::last_ip(const char* what) {
  Layer* l = last_of({Kind::kIpv4, Kind::kIpv6});
  if (!l) die(std::string(what) + " needs a preceding ipv4() or ipv6()");
  return *l;
}

Packet& Packet::eth(std::string_view src, std::string_view dst) {
  Layer l{Kind::kEth};
  auto s = parse_mac(src), d = parse_mac(dst);
  l.hdr.insert(l.hdr.end(), d.begin(), d.end());
  l.hdr.insert(l.hdr.end(), s.begin(), s.end());
  push16(l.hdr, 0);  // ethertype: from the next layer
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::vlan(uint16_t vid, uint16_t tpid, uint8_t pcp) {
  Layer l{Kind::kVlan};
  push16(l.hdr, static_cast<uint16_t>(pcp << 13 | (vid & 0x0fff)));
  push16(l.hdr, 0);  // encapsulated ethertype: from the next layer
  l.tpid = tpid;
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::ethertype(uint16_t type) {
  Layer* l = last_of({Kind::kEth, Kind::kVlan});
  if (!l) die("ethertype() needs eth()");
  l->next = type;
  return *this;
}

Packet& Packet::arp_request(std::string_view sender_ip, std::string_view target_ip) {
  Layer& e = last(Kind::kEth, "arp_request()");
  Bytes sender_mac(e.hdr.begin() + 6, e.hdr.begin() + 12);
  Layer l{Kind::kArp};
  push16(l.hdr, 1);        // hardware: Ethernet
  push16(l.hdr, kEthPIp);  // protocol: IPv4
  l.hdr.push_back(6);
  l.hdr.push_back(4);
  push16(l.hdr, 1);  // request
  l.hdr.insert(l.hdr.end(), sender_mac.begin(), sender_mac.end());
  Bytes sip = parse_ip(sender_ip), tip = parse_ip(target_ip);
  l.hdr.insert(l.hdr.end(), sip.begin(), sip.end());
  l.hdr.insert(l.hdr.end(), 6, 0);
  l.hdr.insert(l.hdr.end(), tip.begin(), tip.end());
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::ipv4(std::string_view src, std::string_view dst) {
  Bytes s = parse_ip(src), d = parse_ip(dst);
  if (s.size() != 4 || d.size() != 4) die("ipv4() needs IPv4 addresses");
  Layer l{Kind::kIpv4};
  l.hdr = {0x45, 0, 0, 0, 0, 1, 0, 0, 64, 0, 0, 0};  // id 1, ttl 64
  l.hdr.insert(l.hdr.end(), s.begin(), s.end());
  l.hdr.insert(l.hdr.end(), d.begin(), d.end());
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::ttl(uint8_t ttl) {
  Layer& l = last_ip("ttl()");
  l.hdr[l.kind == Kind::kIpv4 ? 8 : 7] = ttl;
  return *this;
}

Packet& Packet::ip_id(uint16_t id) {
  put16(last(Kind::kIpv4, "ip_id()").hdr, 4, id);
  return *this;
}

Packet& Packet::tos(uint8_t tos) {
  last(Kind::kIpv4, "tos()").hdr[1] = tos;
  return *this;
}

Packet& Packet::df() {
  Layer& l = last(Kind::kIpv4, "df()");
  put16(l.hdr, 6, get16(l.hdr, 6) | 0x4000);
  return *this;
}

Packet& Packet::ip_options(const Bytes& opts) {
  Layer& l = last(Kind::kIpv4, "ip_options()");
  Bytes p = pad4(opts);
  if (l.hdr.size() + p.size() > 60) die("IPv4 options longer than 40 bytes");
  l.hdr.insert(l.hdr.end(), p.begin(), p.end());
  l.hdr[0] = static_cast<uint8_t>(0x40 | l.hdr.size() / 4);
  return *this;
}

Packet& Packet::frag(uint16_t id, uint16_t offset_bytes, bool mf) {
  if (offset_bytes % 8) die("fragment offset must be a multiple of 8");
  Layer& l = last(Kind::kIpv4, "frag()");
  put16(l.hdr, 4, id);
  uint16_t fo =
      static_cast<uint16_t>((get16(l.hdr, 6) & 0x4000) | (mf ? 0x2000 : 0) | (offset_bytes / 8));
  put16(l.hdr, 6, fo);
  return *this;
}

Packet& Packet::ipv6(std::string_view src, std::string_view dst) {
  Bytes s = parse_ip(src), d = parse_ip(dst);
  if (s.size() != 16 || d.size() != 16) die("ipv6() needs IPv6 addresses");
  Layer l{Kind::kIpv6};
  l.hdr = {0x60, 0, 0, 0, 0, 0, kProtoNone6, 64};
  l.hdr.insert(l.hdr.end(), s.begin(), s.end());
  l.hdr.insert(l.hdr.end(), d.begin(), d.end());
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::flow_label(uint32_t label) {
  Layer& l = last(Kind::kIpv6, "flow_label()");
  l.hdr[1] = static_cast<uint8_t>((l.hdr[1] & 0xf0) | ((label >> 16) & 0x0f));
  l.hdr[2] = static_cast<uint8_t>(label >> 8);
  l.hdr[3] = static_cast<uint8_t>(label);
  return *this;
}

namespace {
// Hop-by-hop / destination options body: one PadN option filling the header, so parsers that
// walk options see a well-formed TLV.
Bytes options_ext(size_t len) {
  Bytes h = {0, static_cast<uint8_t>(len / 8 - 1)};
  h.push_back(1);  // PadN
  h.push_back(static_cast<uint8_t>(len - 4));
  h.resize(len, 0);
  return h;
}
}  // namespace

Packet& Packet::hop_by_hop(size_t len) {
  if (len < 8 || len % 8 || len > 2048) die("extension header length must be 8..2048, *8");
  last_ip("hop_by_hop()");
  Layer l{Kind::kExt};
  l.ext_type = kExtHopByHop;
  l.hdr = options_ext(len);
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::dest_opts(size_t len) {
  if (len < 8 || len % 8 || len > 2048) die("extension header length must be 8..2048, *8");
  last_ip("dest_opts()");
  Layer l{Kind::kExt};
  l.ext_type = kExtDestOpts;
  l.hdr = options_ext(len);
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::routing(size_t len, uint8_t type, uint8_t segments_left) {
  if (len < 8 || len % 8 || len > 2048) die("extension header length must be 8..2048, *8");
  last_ip("routing()");
  Layer l{Kind::kExt};
  l.ext_type = kExtRouting;
  l.hdr = {0, static_cast<uint8_t>(len / 8 - 1), type, segments_left};
  l.hdr.resize(len, 0);
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::ipv6_frag(uint32_t id, uint16_t offset_bytes, bool mf) {
  if (offset_bytes % 8) die("fragment offset must be a multiple of 8");
  last_ip("ipv6_frag()");
  Layer l{Kind::kExt};
  l.ext_type = kExtFragment;
  l.hdr = {0, 0};
  push16(l.hdr, static_cast<uint16_t>(offset_bytes | (mf ? 1 : 0)));  // offset<<3 | M
  push32(l.hdr, id);
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::proto(uint8_t proto) {
  Layer* l = last_of({Kind::kIpv4, Kind::kIpv6, Kind::kExt});
  if (!l) die("proto() needs an IP or extension header");
  l->next = proto;
  return *this;
}

Packet& Packet::tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq, uint32_t ack) {
  last_ip("tcp()");
  Layer l{Kind::kTcp};
  push16(l.hdr, sport);
  push16(l.hdr, dport);
  push32(l.hdr, seq);
  push32(l.hdr, ack);
  l.hdr.push_back(5 << 4);
  l.hdr.push_back(flags);
  push16(l.hdr, 8192);  // window
  push16(l.hdr, 0);     // checksum
  push16(l.hdr, 0);     // urgent pointer
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::tcp_options(const Bytes& opts) {
  Layer& l = last(Kind::kTcp, "tcp_options()");
  Bytes p = pad4(opts);
  if (l.hdr.size() + p.size() > 60) die("TCP options longer than 40 bytes");
  l.hdr.insert(l.hdr.end(), p.begin(), p.end());
  l.hdr[12] = static_cast<uint8_t>(l.hdr.size() / 4 << 4);
  return *this;
}

Packet& Packet::window(uint16_t win) {
  put16(last(Kind::kTcp, "window()").hdr, 14, win);
  return *this;
}

Packet& Packet::udp(uint16_t sport, uint16_t dport) {
  last_ip("udp()");
  Layer l{Kind::kUdp};
  push16(l.hdr, sport);
  push16(l.hdr, dport);
  push16(l.hdr, 0);  // length: from what follows
  push16(l.hdr, 0);  // checksum
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::icmp_echo(uint16_t id, uint16_t seq) {
  Layer& ip = last_ip("icmp_echo()");
  bool v6 = ip.kind == Kind::kIpv6;
  Layer l{v6 ? Kind::kIcmp6 : Kind::kIcmp};
  l.hdr = {static_cast<uint8_t>(v6 ? 128 : 8), 0, 0, 0};
  push16(l.hdr, id);
  push16(l.hdr, seq);
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::icmp_frag_needed(uint16_t mtu, const Packet& inner) {
  last(Kind::kIpv4, "icmp_frag_needed()");
  Layer l{Kind::kIcmp};
  l.hdr = {3, 4, 0, 0, 0, 0};
  push16(l.hdr, mtu);
  Bytes q = inner.build();
  l.hdr.insert(l.hdr.end(), q.begin(), q.end());
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::icmp6_packet_too_big(uint32_t mtu, const Packet& inner) {
  last(Kind::kIpv6, "icmp6_packet_too_big()");
  Layer l{Kind::kIcmp6};
  l.hdr = {2, 0, 0, 0};
  push32(l.hdr, mtu);
  Bytes q = inner.build();
  l.hdr.insert(l.hdr.end(), q.begin(), q.end());
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::payload(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; i++) b[i] = static_cast<uint8_t>((i * 7 + 3) & 0xff);
  return payload(b);
}

Packet& Packet::payload(const Bytes& bytes) {
  Layer l{Kind::kRaw};
  l.hdr = bytes;
  layers_.push_back(std::move(l));
  return *this;
}

Packet& Packet::version(uint8_t v) {
  last_ip("version()").version = v;
  return *this;
}
Packet& Packet::ihl(uint8_t ihl) {
  last(Kind::kIpv4, "ihl()").ihl = ihl;
  return *this;
}
Packet& Packet::tot_len(uint16_t len) {
  last(Kind::kIpv4, "tot_len()").tot_len = len;
  return *this;
}
Packet& Packet::payload_len(uint16_t len) {
  last(Kind::kIpv6, "payload_len()").tot_len = len;
  return *this;
}
Packet& Packet::doff(uint8_t doff) {
  last(Kind::kTcp, "doff()").doff = doff;
  return *this;
}
Packet& Packet::udp_len(uint16_t len) {
  last(Kind::kUdp, "udp_len()").udp_len = len;
  return *this;
}
Packet& Packet::udp_zero_csum() {
  last(Kind::kUdp, "udp_zero_csum()").udp_zero_csum = true;
  return *this;
}

Packet& Packet::truncate(size_t n) {
  edits_.push_back({Edit::Op::kTruncate, n, 0});
  return *this;
}
Packet& Packet::shorten(size_t n) {
  edits_.push_back({Edit::Op::kShorten, n, 0});
  return *this;
}
Packet& Packet::pad_to(size_t n) {
  edits_.push_back({Edit::Op::kPad, n, 0});
  return *this;
}
Packet& Packet::corrupt(size_t offset, uint8_t value) {
  edits_.push_back({Edit::Op::kCorrupt, offset, value});
  return *this;
}

size_t Packet::l3_offset() const {
  size_t off = 0, found = SIZE_MAX;
  for (const Layer& l : layers_) {
    if (l.kind == Kind::kIpv4 || l.kind == Kind::kIpv6) found = off;
    off += l.hdr.size();
  }
  if (found == SIZE_MAX) die("l3_offset(): no IP header");
  return found;
}

size_t Packet::l4_offset() const {
  size_t off = 0, found = SIZE_MAX;
  for (const Layer& l : layers_) {
    if (l.kind == Kind::kTcp || l.kind == Kind::kUdp || l.kind == Kind::kIcmp ||
        l.kind == Kind::kIcmp6) {
      found = off;
    }
    off += l.hdr.size();
  }
  if (found == SIZE_MAX) die("l4_offset(): no L4 header");
  return found;
}

// ---------------------------------------------------------------------------------------------
// Serialisation

Bytes Packet::build() const {
  Bytes out;
  std::vector<size_t> off(layers_.size());
  for (size_t i = 0; i < layers_.size(); i++) {
    off[i] = out.size();
    out.insert(out.end(), layers_[i].hdr.begin(), layers_[i].hdr.end());
  }
  const size_t end = out.size();

  // What layer i+1 is, as a protocol number or ethertype.
  auto next_proto = [&](size_t i) -> std::optional<uint16_t> {
    if (layers_[i].next) return layers_[i].next;
    if (i + 1 >= layers_.size()) return std::nullopt;
    const Layer& n = layers_[i + 1];
    switch (n.kind) {
      case Kind::kVlan:
        return n.tpid;
      case Kind::kArp:
        return kEthPArp;
      case Kind::kIpv4:
        return layers_[i].kind == Kind::kEth || layers_[i].kind == Kind::kVlan ? kEthPIp : 4;
      case Kind::kIpv6:
        return layers_[i].kind == Kind::kEth || layers_[i].kind == Kind::kVlan ? kEthPIpv6 : 41;
      case Kind::kExt:
        return n.ext_type;
      case Kind::kTcp:
        return kProtoTcp;
      case Kind::kUdp:
        return kProtoUdp;
      case Kind::kIcmp:
        return kProtoIcmp;
      case Kind::kIcmp6:
        return kProtoIcmp6;
      default:
        return std::nullopt;
    }
  };

  // Pass 1: next-protocol fields and lengths.
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& l = layers_[i];
    auto np = next_proto(i);
    switch (l.kind) {
      case Kind::kEth:
        if (np) put16(out, off[i] + 12, *np);
        break;
      case Kind::kVlan:
        if (np) put16(out, off[i] + 2, *np);
        break;
      case Kind::kIpv4:
        if (np) out[off[i] + 9] = static_cast<uint8_t>(*np);
        put16(out, off[i] + 2, static_cast<uint16_t>(end - off[i]));
        break;
      case Kind::kIpv6:
        if (np) out[off[i] + 6] = static_cast<uint8_t>(*np);
        put16(out, off[i] + 4, static_cast<uint16_t>(end - off[i] - 40));
        break;
      case Kind::kExt:
        out[off[i]] = static_cast<uint8_t>(np ? *np : kProtoNone6);
        break;
      case Kind::kUdp:
        put16(out, off[i] + 4, static_cast<uint16_t>(end - off[i]));
        break;
      default:
        break;
    }
  }

  // Pass 2: overrides (the packet is then wrong exactly where the test says).
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& l = layers_[i];
    size_t o = off[i];
    if (l.version) out[o] = static_cast<uint8_t>((*l.version << 4) | (out[o] & 0x0f));
    if (l.ihl) out[o] = static_cast<uint8_t>((out[o] & 0xf0) | (*l.ihl & 0x0f));
    if (l.tot_len) put16(out, o + (l.kind == Kind::kIpv4 ? 2 : 4), *l.tot_len);
    if (l.doff) out[o + 12] = static_cast<uint8_t>((*l.doff << 4) | (out[o + 12] & 0x0f));
    if (l.udp_len) put16(out, o + 4, *l.udp_len);
  }

  // Pass 3: L4 checksums (over everything present after the L4 header start), then IPv4
  // header checksums. An ICMP error's quoted packet was finished by its own build().
  for (size_t i = 0; i < layers_.size(); i++) {
    const Layer& l = layers_[i];
    if (l.kind != Kind::kTcp && l.kind != Kind::kUdp && l.kind != Kind::kIcmp &&
        l.kind != Kind::kIcmp6) {
      continue;
    }
    size_t ip = SIZE_MAX;
    for (size_t j = i; j-- > 0;) {
      if (layers_[j].kind == Kind::kIpv4 || layers_[j].kind == Kind::kIpv6) {
        ip = j;
        break;
      }
    }
    const bool v6 = layers_[ip].kind == Kind::kIpv6;
    const size_t len = end - off[i];
    const size_t csum_off = off[i] + (l.kind == Kind::kTcp ? 16 : l.kind == Kind::kUdp ? 6 : 2);
    uint8_t proto = l.kind == Kind::kTcp    ? kProtoTcp
                    : l.kind == Kind::kUdp  ? kProtoUdp
                    : l.kind == Kind::kIcmp ? kProtoIcmp
                                            : kProtoIcmp6;
    Bytes pseudo;
    if (l.kind != Kind::kIcmp) {
      const size_t a = off[ip] + (v6 ? 8 : 12), alen = v6 ? 16 : 4;
      pseudo.insert(pseudo.end(), out.begin() + a, out.begin() + a + 2 * alen);
      if (v6) {
        push32(pseudo, static_cast<uint32_t>(len));
        pseudo.insert(pseudo.end(), {0, 0, 0, proto});
      } else {
        pseudo.insert(pseudo.end(), {0, proto});
        push16(pseudo, static_cast<uint16_t>(len));
      }
    }
    put16(out, csum_off, 0);
    if (l.kind == Kind::kUdp && l.udp_zero_csum) continue;
    uint16_t c = builder_csum(pseudo, out, off[i], len);
    if (l.kind == Kind::kUdp && c == 0) c = 0xffff;  // 0 would mean "no checksum"
    put16(out, csum_off, c);
  }
  for (size_t i = 0; i < layers_.size(); i++) {
    if (layers_[i].kind != Kind::kIpv4) continue;
    put16(out, off[i] + 10, 0);
    put16(out, off[i] + 10, builder_csum({}, out, off[i], layers_[i].hdr.size()));
  }

  // Pass 4: post-build edits in call order.
  for (const Edit& e : edits_) {
    switch (e.op) {
      case Edit::Op::kTruncate:
        if (e.n < out.size()) out.resize(e.n);
        break;
      case Edit::Op::kShorten: {
        if (e.n < out.size()) out.resize(e.n);
        for (size_t i = 0; i < layers_.size(); i++) {
          if (layers_[i].kind == Kind::kIpv4) {
            put16(out, off[i] + 2, static_cast<uint16_t>(out.size() - off[i]));
            put16(out, off[i] + 10, 0);
            put16(out, off[i] + 10, builder_csum({}, out, off[i], layers_[i].hdr.size()));
            break;
          }
          if (layers_[i].kind == Kind::kIpv6) {
            put16(out, off[i] + 4, static_cast<uint16_t>(out.size() - off[i] - 40));
            break;
          }
        }
        break;
      }
      case Edit::Op::kPad:
        if (e.n > out.size()) out.resize(e.n, 0);
        break;
      case Edit::Op::kCorrupt:
        if (e.n >= out.size()) die("corrupt() offset past the end");
        out[e.n] = e.value;
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Independent verifier. Deliberately shares nothing with the builder above: its own parser,
// and a byte-stream one's-complement accumulator over the segment *including* the stored
// checksum, which must come out as 0xffff.

namespace {

class OnesSum {
 public:
  void add(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i++, pos_++) acc_ += (pos_ & 1) ? p[i] : uint64_t{p[i]} << 8;
  }
  void add(const Bytes& b, size_t off, size_t n) { add(b.data() + off, n); }
  uint16_t folded() const {
    uint64_t s = acc_;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
  }

 private:
  uint64_t acc_ = 0;
  size_t pos_ = 0;
};

uint16_t rd16(const Bytes& b, size_t o) { return static_cast<uint16_t>(b[o] * 256 + b[o + 1]); }

// What the field should have been, for the error message only.
uint16_t correct_value(OnesSum with_field, uint16_t field) {
  uint32_t s = with_field.folded();
  // Subtracting in one's complement = adding the complement.
  s += static_cast<uint16_t>(~field);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

class Verifier {
 public:
  explicit Verifier(const Bytes& f) : f_(f) {}

  std::vector<std::string> run() {
    size_t o = 14;
    if (f_.size() < o) return errs_;
    uint16_t type = rd16(f_, 12);
    for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); tags++) {
      if (f_.size() < o + 4) return errs_;
      type = rd16(f_, o + 2);
      o += 4;
    }
    if (type == 0x0800) ipv4(o, f_.size(), "");
    if (type == 0x86dd) ipv6(o, f_.size(), "");
    return errs_;
  }

 private:
  void err(const std::string& s) { errs_.push_back(s); }

  void check(const char* what, const std::string& where, const OnesSum& s, uint16_t field) {
    if (s.folded() != 0xffff) {
      err(where + what + " checksum " + hex16(field) + " is wrong, expected " +
          hex16(correct_value(s, field)));
    }
  }

  void ipv4(size_t o, size_t end, const std::string& where) {
    if (end < o + 20) return err(where + "ipv4 header truncated");
    const size_t hl = (f_[o] & 0x0f) * 4u;
    if (hl < 20 || o + hl > end) return err(where + "ipv4 ihl invalid");
    OnesSum h;
    h.add(f_, o, hl);
    check("ipv4 header", where, h, rd16(f_, o + 10));
    if (!where.empty()) return;  // quoted: its L4 part is cut short by design
    const size_t tot = rd16(f_, o + 2);
    if (tot < hl || o + tot > end) return err("ipv4 tot_len " + std::to_string(tot) + " invalid");
    if (rd16(f_, o + 6) & 0x3fff) return;  // fragment: L4 checksum covers absent bytes
    OnesSum pseudo;
    pseudo.add(f_, o + 12, 8);
    const uint8_t zero_proto[2] = {0, f_[o + 9]};
    pseudo.add(zero_proto, 2);
    const uint8_t len[2] = {static_cast<uint8_t>((tot - hl) >> 8), static_cast<uint8_t>(tot - hl)};
    pseudo.add(len, 2);
    l4(f_[o + 9], o + hl, o + tot, pseudo, /*v6=*/false);
  }

  void ipv6(size_t o, size_t end, const std::string& where) {
    if (end < o + 40) return err(where + "ipv6 header truncated");
    if (!where.empty()) return;  // a quoted IPv6 header has no checksum of its own
    const size_t l3end = o + 40 + rd16(f_, o + 4);
    if (l3end > end) return err("ipv6 payload_len past the frame");
    uint8_t nh = f_[o + 6];
    size_t p = o + 40;
    for (int n = 0; n < 16; n++) {
      if (nh == 0 || nh == 43 || nh == 60) {
        if (p + 2 > l3end) return err("ipv6 extension header truncated");
        nh = f_[p];
        p += (f_[p + 1] + 1u) * 8;
      } else if (nh == 44) {
        if (p + 8 > l3end) return err("ipv6 fragment header truncated");
        if (rd16(f_, p + 2) & 0xfff9) return;  // a fragment: skip L4
        nh = f_[p];
        p += 8;
      } else {
        break;
      }
    }
    if (p > l3end) return err("ipv6 extension headers past payload_len");
    const size_t len = l3end - p;
    OnesSum pseudo;
    pseudo.add(f_, o + 8, 32);
    const uint8_t tail[8] = {static_cast<uint8_t>(len >> 24),
                             static_cast<uint8_t>(len >> 16),
                             static_cast<uint8_t>(len >> 8),
                             static_cast<uint8_t>(len),
                             0,
                             0,
                             0,
                             nh};
    pseudo.add(tail, 8);
    l4(nh, p, l3end, pseudo, /*v6=*/true);
  }

  void l4(uint8_t proto, size_t p, size_t end, OnesSum s, bool v6) {
    const size_t len = end - p;
    switch (proto) {
      case 6:
        if (len < 20) return err("tcp header truncated");
        s.add(f_, p, len);
        return check("tcp", "", s, rd16(f_, p + 16));
      case 17:
        if (len < 8) return err("udp header truncated");
        if (rd16(f_, p + 6) == 0) {
          if (v6) err("udp checksum 0 is not allowed over IPv6");
          return;
        }
        s.add(f_, p, len);
        return check("udp", "", s, rd16(f_, p + 6));
      case 1: {
        if (v6 || len < 8) return err("icmp header truncated");
        OnesSum m;  // ICMPv4 has no pseudo-header
        m.add(f_, p, len);
        check("icmp", "", m, rd16(f_, p + 2));
        const uint8_t type = f_[p];
        if ((type == 3 || type == 11 || type == 12) && len >= 8 + 20) {
          ipv4(p + 8, end, "quoted ");
        }
        return;
      }
      case 58:
        if (!v6 || len < 8) return err("icmpv6 header truncated");
        s.add(f_, p, len);
        return check("icmpv6", "", s, rd16(f_, p + 2));
      default:
        return;
    }
  }

  const Bytes& f_;
  std::vector<std::string> errs_;
};

}  // namespace

std::vector<std::string> verify_checksums(const Bytes& frame) { return Verifier(frame).run(); }

// ---------------------------------------------------------------------------------------------
// Decoding for failure messages

namespace {

std::string mac_str(const Bytes& b, size_t o) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", b[o], b[o + 1], b[o + 2],
                b[o + 3], b[o + 4], b[o + 5]);
  return buf;
}

std::string tcp_flags(uint8_t f) {
  std::string s;
  const char* names = "FSRPAU";
  for (int i = 0; i < 6; i++) {
    if (f & (1 << i)) s += names[i];
  }
  return s.empty() ? "." : s;
}

void describe_l3(const Bytes& f, size_t o, size_t end, uint16_t type, std::ostream& os, int depth);

void describe_l4(const Bytes& f, uint8_t proto, size_t p, size_t end, std::ostream& os, int depth) {
  const size_t len = end > p ? end - p : 0;
  switch (proto) {
    case 6:
      if (len < 20) {
        os << "tcp (truncated: " << len << " bytes)\n";
        return;
      }
      os << "tcp " << rd16(f, p) << " > " << rd16(f, p + 2) << " flags " << tcp_flags(f[p + 13])
         << " seq " << get32(f, p + 4) << " ack " << get32(f, p + 8) << " doff " << (f[p + 12] >> 4)
         << " win " << rd16(f, p + 14) << " csum " << hex16(rd16(f, p + 16)) << " (+" << len - 20
         << " bytes)\n";
      return;
    case 17:
      if (len < 8) {
        os << "udp (truncated: " << len << " bytes)\n";
        return;
      }
      os << "udp " << rd16(f, p) << " > " << rd16(f, p + 2) << " len " << rd16(f, p + 4) << " csum "
         << hex16(rd16(f, p + 6)) << " (+" << len - 8 << " bytes)\n";
      return;
    case 1:
    case 58: {
      if (len < 8) {
        os << (proto == 1 ? "icmp" : "icmpv6") << " (truncated: " << len << " bytes)\n";
        return;
      }
      os << (proto == 1 ? "icmp" : "icmpv6") << " type " << int{f[p]} << " code " << int{f[p + 1]}
         << " csum " << hex16(rd16(f, p + 2)) << " rest " << hex16(rd16(f, p + 4))
         << hex16(rd16(f, p + 6)).substr(2) << "\n";
      const bool error = proto == 1 ? (f[p] == 3 || f[p] == 11 || f[p] == 12) : f[p] < 128;
      if (error && depth == 0 && len > 8) {
        os << "    quoted: ";
        describe_l3(f, p + 8, end, proto == 1 ? 0x0800 : 0x86dd, os, depth + 1);
      }
      return;
    }
    default:
      os << "proto " << int{proto} << " (" << len << " bytes)\n";
  }
}

void describe_l3(const Bytes& f, size_t o, size_t end, uint16_t type, std::ostream& os, int depth) {
  const char* ind = depth ? "    " : "";
  if (type == 0x0800) {
    if (end < o + 20) {
      os << "ipv4 (truncated: " << end - o << " bytes)\n";
      return;
    }
    const size_t hl = (f[o] & 0x0f) * 4u;
    const uint16_t fo = rd16(f, o + 6);
    os << "ipv4 " << ip_str(f, o + 12, false) << " > " << ip_str(f, o + 16, false) << " ver "
       << (f[o] >> 4) << " ihl " << (f[o] & 0x0f) << " tot_len " << rd16(f, o + 2) << " id "
       << rd16(f, o + 4) << ((fo & 0x4000) ? " DF" : "") << ((fo & 0x2000) ? " MF" : "") << " off "
       << (fo & 0x1fff) * 8 << " ttl " << int{f[o + 8]} << " proto " << int{f[o + 9]} << " csum "
       << hex16(rd16(f, o + 10)) << "\n";
    if (hl < 20 || o + hl > end) {
      os << ind << "  (header length " << hl << " does not fit)\n";
      return;
    }
    if (fo & 0x1fff) {
      os << ind << "  fragment payload " << end - o - hl << " bytes\n";
      return;
    }
    os << ind << "  ";
    // Quoted packets are cut short; let the L4 decoder see what is there.
    size_t l3end = depth ? end : std::min(end, o + std::max<size_t>(rd16(f, o + 2), hl));
    describe_l4(f, f[o + 9], o + hl, l3end, os, depth);
    return;
  }
  if (end < o + 40) {
    os << "ipv6 (truncated: " << end - o << " bytes)\n";
    return;
  }
  os << "ipv6 " << ip_str(f, o + 8, true) << " > " << ip_str(f, o + 24, true) << " ver "
     << (f[o] >> 4) << " payload_len " << rd16(f, o + 4) << " nh " << int{f[o + 6]} << " hlim "
     << int{f[o + 7]} << "\n";
  uint8_t nh = f[o + 6];
  size_t p = o + 40;
  for (int n = 0; n < 16; n++) {
    if (nh == 0 || nh == 43 || nh == 60) {
      if (p + 2 > end) {
        os << ind << "  ext " << int{nh} << " (truncated)\n";
        return;
      }
      const size_t len = (f[p + 1] + 1u) * 8;
      os << ind << "  ext "
         << (nh == 0    ? "hop-by-hop"
             : nh == 43 ? "routing"
                        : "dest-opts")
         << " len " << len << " nh " << int{f[p]} << "\n";
      nh = f[p];
      p += len;
    } else if (nh == 44) {
      if (p + 8 > end) {
        os << ind << "  ext fragment (truncated)\n";
        return;
      }
      const uint16_t fo = rd16(f, p + 2);
      os << ind << "  ext fragment id " << get32(f, p + 4) << " off " << (fo & 0xfff8)
         << ((fo & 1) ? " M" : "") << " nh " << int{f[p]} << "\n";
      nh = f[p];
      p += 8;
      if (fo & 0xfff8) {
        os << ind << "  fragment payload " << (end > p ? end - p : 0) << " bytes\n";
        return;
      }
    } else {
      break;
    }
  }
  if (p > end) {
    os << ind << "  (extension headers run past the frame)\n";
    return;
  }
  os << ind << "  ";
  describe_l4(f, nh, p, end, os, depth);
}

}  // namespace

std::string describe(const Bytes& f) {
  std::ostringstream os;
  os << "frame " << f.size() << " bytes\n";
  if (f.size() < 14) {
    os << "  (shorter than an Ethernet header)\n";
    return os.str();
  }
  os << "  eth " << mac_str(f, 6) << " > " << mac_str(f, 0) << " type " << hex16(rd16(f, 12))
     << "\n";
  size_t o = 14;
  uint16_t type = rd16(f, 12);
  for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); tags++) {
    if (f.size() < o + 4) {
      os << "  vlan (truncated)\n";
      return os.str();
    }
    os << "  vlan " << (rd16(f, o) & 0x0fff) << " pcp " << (f[o] >> 5) << " type "
       << hex16(rd16(f, o + 2)) << "\n";
    type = rd16(f, o + 2);
    o += 4;
  }
  if (type == 0x0800 || type == 0x86dd) {
    os << "  ";
    describe_l3(f, o, f.size(), type, os, 0);
  } else {
    os << "  (not IP)\n";
  }
  return os.str();
}

std::string hexdump(const Bytes& f) {
  std::ostringstream os;
  char buf[24];
  for (size_t row = 0; row < f.size(); row += 16) {
    std::snprintf(buf, sizeof(buf), "%04zx ", row);
    os << buf;
    for (size_t i = row; i < row + 16 && i < f.size(); i++) {
      std::snprintf(buf, sizeof(buf), " %02x", f[i]);
      os << buf;
    }
    os << "\n";
  }
  return os.str();
}

std::string diff(const Bytes& expected, const Bytes& actual) {
  if (expected == actual) return "";
  std::ostringstream os;
  size_t first = SIZE_MAX;
  for (size_t i = 0; i < std::max(expected.size(), actual.size()); i++) {
    if (i >= expected.size() || i >= actual.size() || expected[i] != actual[i]) {
      first = i;
      break;
    }
  }
  os << "expected " << expected.size() << " bytes, actual " << actual.size()
     << " bytes; first difference at offset " << first << "\n";
  char buf[24];
  auto row_of = [&](const Bytes& b, size_t row) {
    std::string s;
    for (size_t i = row; i < row + 16; i++) {
      if (i < b.size()) {
        std::snprintf(buf, sizeof(buf), " %02x", b[i]);
        s += buf;
      } else {
        s += "   ";
      }
    }
    return s;
  };
  for (size_t row = 0; row < std::max(expected.size(), actual.size()); row += 16) {
    std::string marks;
    bool differs = false;
    for (size_t i = row; i < row + 16; i++) {
      bool d = (i < expected.size()) != (i < actual.size()) ||
               (i < expected.size() && expected[i] != actual[i]);
      marks += d ? " ^^" : "   ";
      differs |= d;
    }
    std::snprintf(buf, sizeof(buf), "%04zx", row);
    os << buf << " exp" << row_of(expected, row) << "\n";
    os << "     act" << row_of(actual, row) << "\n";
    if (differs) os << "        " << marks << "\n";
  }
  os << "expected decoded:\n" << describe(expected) << "actual decoded:\n" << describe(actual);
  return os.str();
}

}  // namespace sluice::test
