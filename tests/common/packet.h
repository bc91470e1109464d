// A fluent packet builder for the XDP packet tests, plus an independent checksum verifier and
// a readable dump of expected vs actual frames.
//
//   Packet().eth(kClientMac, kLbMac).vlan(100).ipv4("198.18.0.2", "203.0.113.10")
//       .tcp(40000, 80, tcpf::kSyn).payload(32).build();
//
// Layers are recorded in call order and serialised by build(): each header's "next protocol"
// field (ethertype, IPv4 protocol, IPv6 next header) is derived from the layer that follows,
// lengths (IPv4 tot_len, IPv6 payload_len, UDP length) from what follows, and every checksum is
// computed last, so a plain chain always yields a valid packet. Malformed packets are made with
// explicit overrides (ihl(), tot_len(), doff(), ...), which are applied *before* checksums so
// the packet is wrong only in the way the test intends, and with post-build edits (truncate(),
// shorten(), pad_to(), corrupt()), which are applied in call order to the finished bytes.
//
// The verifier (verify_checksums) shares no code with the builder's checksum path: it parses
// the frame on its own, sums every segment *including* its checksum field and expects 0xffff.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

using Bytes = std::vector<uint8_t>;

namespace tcpf {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
}  // namespace tcpf

inline constexpr uint16_t kEthP8021Q = 0x8100;
inline constexpr uint16_t kEthP8021AD = 0x88a8;
inline constexpr uint16_t kEthPIp = 0x0800;
inline constexpr uint16_t kEthPIpv6 = 0x86dd;
inline constexpr uint16_t kEthPArp = 0x0806;

// "aa:bb:cc:dd:ee:ff" -> 6 bytes. Aborts on a malformed literal (a test bug, not a case).
std::array<uint8_t, 6> parse_mac(std::string_view s);
// IPv4 dotted quad or IPv6 text -> 4 or 16 network-order bytes. Aborts on a malformed literal.
Bytes parse_ip(std::string_view s);

class Packet {
 public:
  Packet() = default;

  // --- L2 ---
  Packet& eth(std::string_view src, std::string_view dst);
  // One VLAN tag: `tpid` goes into the preceding ethertype field, the tag's own ethertype
  // comes from the next layer. Use kEthP8021AD for the outer tag of a QinQ pair.
  Packet& vlan(uint16_t vid, uint16_t tpid = kEthP8021Q, uint8_t pcp = 0);
  // Forces the ethertype of the innermost L2 header (for non-IP frames such as ARP).
  Packet& ethertype(uint16_t type);
  // A 28-byte ARP request (who-has target tell sender); also sets the ethertype.
  Packet& arp_request(std::string_view sender_ip, std::string_view target_ip);

  // --- IPv4 ---
  Packet& ipv4(std::string_view src, std::string_view dst);
  Packet& ttl(uint8_t ttl);    // IPv4 TTL or IPv6 hop limit of the last IP header
  Packet& ip_id(uint16_t id);  // host order
  Packet& tos(uint8_t tos);
  Packet& df();                           // set the don't-fragment bit
  Packet& ip_options(const Bytes& opts);  // padded to a multiple of 4 with EOL (0)
  // IPv4: fragment id, offset in bytes (multiple of 8) and the more-fragments bit.
  Packet& frag(uint16_t id, uint16_t offset_bytes, bool mf);

  // --- IPv6 and its extension headers (each `len` is the whole header, a multiple of 8) ---
  Packet& ipv6(std::string_view src, std::string_view dst);
  Packet& flow_label(uint32_t label);
  Packet& hop_by_hop(size_t len = 8);
  // A routing header of `type` (default 253, experimental) with `segments_left`; the rest of
  // the header (reserved word, addresses) is zero.
  Packet& routing(size_t len = 8, uint8_t type = 253, uint8_t segments_left = 0);
  Packet& dest_opts(size_t len = 8);
  Packet& ipv6_frag(uint32_t id, uint16_t offset_bytes, bool mf);

  // Forces the protocol / next-header field of the last IPv4, IPv6 or extension header. Needed
  // when no L4 header follows (later fragments) or to lie about what follows.
  Packet& proto(uint8_t proto);

  // --- L4 ---
  Packet& tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 1000, uint32_t ack = 0);
  Packet& tcp_options(const Bytes& opts);  // padded to a multiple of 4 with EOL (0)
  Packet& window(uint16_t win);
  Packet& udp(uint16_t sport, uint16_t dport);
  // IPv4 echo request (type 8) or, after ipv6(), ICMPv6 echo request (type 128).
  Packet& icmp_echo(uint16_t id, uint16_t seq);
  // ICMPv4 type 3 code 4 with next-hop MTU, quoting `inner` (an L3 packet: ipv4()...).
  Packet& icmp_frag_needed(uint16_t mtu, const Packet& inner);
  // ICMPv6 type 2 code 0 (packet too big) quoting `inner` (an L3 packet: ipv6()...).
  Packet& icmp6_packet_too_big(uint32_t mtu, const Packet& inner);

  // Application payload: n bytes of a deterministic pattern (byte i = (i * 7 + 3) & 0xff), or
  // explicit bytes.
  Packet& payload(size_t n);
  Packet& payload(const Bytes& bytes);

  // --- overrides, applied to the fields before checksums are computed ---
  Packet& version(uint8_t v);         // IP version nibble of the last IP header
  Packet& ihl(uint8_t ihl);           // IPv4 header-length field (words)
  Packet& tot_len(uint16_t len);      // IPv4 total length
  Packet& payload_len(uint16_t len);  // IPv6 payload length
  Packet& doff(uint8_t doff);         // TCP data offset (words)
  Packet& udp_len(uint16_t len);      // UDP length field
  Packet& udp_zero_csum();            // IPv4 UDP without a checksum (field 0)

  // --- post-build edits, applied in call order to the finished bytes ---
  // Cuts the frame to n bytes; headers keep claiming the original lengths (a short capture).
  Packet& truncate(size_t n);
  // Cuts the frame to n bytes and rewrites the outermost IP length field (and the IPv4 header
  // checksum) so L3 claims exactly what is left: a sender that emitted a short L4 segment.
  Packet& shorten(size_t n);
  // Appends zero bytes up to n (Ethernet padding beyond the IP length).
  Packet& pad_to(size_t n);
  // Overwrites one byte.
  Packet& corrupt(size_t offset, uint8_t value);

  Bytes build() const;
  size_t size() const { return build().size(); }

  // Offsets of the last recorded layer kinds in the built frame (for field-by-field checks).
  size_t l3_offset() const;
  size_t l4_offset() const;

 private:
  enum class Kind {
    kEth,
    kVlan,
    kArp,
    kIpv4,
    kIpv6,
    kExt,  // IPv6 extension header (hbh / routing / dest-opts / fragment)
    kTcp,
    kUdp,
    kIcmp,
    kIcmp6,
    kRaw,
  };
  struct Layer {
    Kind kind;
    Bytes hdr;                     // serialised header with placeholder lengths/checksums
    uint8_t ext_type = 0;          // kExt: 0, 43, 60 or 44
    uint16_t tpid = 0;             // kVlan: the ethertype that announces this tag
    std::optional<uint16_t> next;  // forced ethertype / protocol / next header
    // Overrides applied before checksumming.
    std::optional<uint8_t> version, ihl, doff;
    std::optional<uint16_t> tot_len, udp_len;
    bool udp_zero_csum = false;
  };
  struct Edit {
    enum class Op { kTruncate, kShorten, kPad, kCorrupt } op;
    size_t n;
    uint8_t value;
  };

  Layer& last(Kind kind, const char* what);
  Layer* last_of(std::initializer_list<Kind> kinds);
  Layer& last_ip(const char* what);

  std::vector<Layer> layers_;
  std::vector<Edit> edits_;
};

// Full, from-scratch check of every checksum in `frame`: IPv4 header checksums (outer and,
// for ICMP errors, quoted), TCP/UDP (with pseudo-header), ICMP, ICMPv6 (with pseudo-header).
// An IPv4 UDP checksum of 0 means "none" and is accepted; on IPv6 it is an error. L4 checksums
// of fragments are not checked (they cover bytes that are not in this frame). Returns one
// message per problem; empty means every checksum it could find is valid.
std::vector<std::string> verify_checksums(const Bytes& frame);

// One line per layer: "eth 02:..:02 > 02:..:01 type 0x0800 | ipv4 198.18.0.2 > 203.0.113.10
// ...". Stops with a note at the first header it cannot read.
std::string describe(const Bytes& frame);

// Hex dump, 16 bytes per row.
std::string hexdump(const Bytes& frame);

// Side-by-side dump of expected and actual (hex rows with differing bytes marked, then the
// decoded layers of both). Empty when they are equal.
std::string diff(const Bytes& expected, const Bytes& actual);

}  // namespace sluice::test
