// Self-tests of the packet builder and the independent checksum verifier. The XDP tests trust
// both, so each is pinned here against values computed outside this code (RFC 1071 by hand or
// a separate script) and against each other.
#include "packet.h"

#include <gtest/gtest.h>

namespace sluice::test {
namespace {

uint16_t at16(const Bytes& b, size_t o) { return static_cast<uint16_t>(b[o] << 8 | b[o + 1]); }

std::string joined(const std::vector<std::string>& errs) {
  std::string s;
  for (const auto& e : errs) s += e + "\n";
  return s;
}

TEST(PacketBuilder, Ipv4HeaderChecksumMatchesKnownValue) {
  // The classic worked example: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
  Bytes b =
      Packet().ipv4("192.168.0.1", "192.168.0.199").ip_id(0).df().udp(1, 2).payload(87).build();
  ASSERT_EQ(b.size(), 0x73u);
  Bytes hdr(b.begin(), b.begin() + 20);
  Bytes want = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(hdr, want) << diff(want, hdr);
}

TEST(PacketBuilder, UdpChecksumMatchesHandComputedValue) {
  // Pseudo 0a00+0001+0a00+0002+0011+0008, header 0001+0002+0008+0000 = 0x1427 -> ~ = 0xebd8.
  Bytes b = Packet().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).build();
  ASSERT_EQ(b.size(), 28u);
  EXPECT_EQ(at16(b, 20 + 4), 8);
  EXPECT_EQ(at16(b, 20 + 6), 0xebd8);
}

TEST(PacketBuilder, TcpAndIpv4ChecksumsMatchScriptValues) {
  // Computed by a separate Python RFC 1071 implementation.
  Bytes b = Packet().ipv4("198.18.0.2", "203.0.113.10").tcp(40000, 80, tcpf::kSyn, 1000).build();
  ASSERT_EQ(b.size(), 40u);
  EXPECT_EQ(at16(b, 10), 0x78b0);
  EXPECT_EQ(at16(b, 20 + 16), 0xed4a);
}

TEST(PacketBuilder, Icmpv6ChecksumIncludesPseudoHeader) {
  Bytes b = Packet().ipv6("fd00:18::2", "2001:db8:100::10").icmp_echo(7, 1).build();
  ASSERT_EQ(b.size(), 48u);
  EXPECT_EQ(b[6], 58);
  EXPECT_EQ(at16(b, 40 + 2), 0x53d1);
}

TEST(PacketBuilder, LengthsAndNextProtocolsFollowTheLayers) {
  Bytes b = Packet()
                .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                .vlan(10, kEthP8021AD)
                .vlan(20)
                .ipv6("fd00:18::2", "2001:db8:100::10")
                .hop_by_hop()
                .routing(16)
                .dest_opts()
                .udp(5000, 53)
                .payload(10)
                .build();
  ASSERT_EQ(b.size(), 14u + 8 + 40 + 8 + 16 + 8 + 8 + 10);
  EXPECT_EQ(at16(b, 12), 0x88a8);
  EXPECT_EQ(at16(b, 14) & 0xfff, 10);
  EXPECT_EQ(at16(b, 16), 0x8100);
  EXPECT_EQ(at16(b, 18) & 0xfff, 20);
  EXPECT_EQ(at16(b, 20), 0x86dd);
  const size_t ip = 22;
  EXPECT_EQ(at16(b, ip + 4), 8 + 16 + 8 + 8 + 10);  // payload_len
  EXPECT_EQ(b[ip + 6], 0);                          // -> hop-by-hop
  EXPECT_EQ(b[ip + 40], 43);                        // -> routing
  EXPECT_EQ(b[ip + 41], 0);                         // 8 bytes
  EXPECT_EQ(b[ip + 48], 60);                        // -> dest-opts
  EXPECT_EQ(b[ip + 49], 1);                         // 16 bytes
  EXPECT_EQ(b[ip + 64], 17);                        // -> udp
  EXPECT_EQ(at16(b, ip + 72 + 4), 18);              // udp length
  EXPECT_TRUE(verify_checksums(b).empty()) << joined(verify_checksums(b));
}

TEST(PacketBuilder, Ipv4OptionsAndFragmentFields) {
  Bytes b = Packet()
                .ipv4("198.18.0.2", "203.0.113.10")
                .ip_options({0x01, 0x01, 0x01})  // NOPs, padded to 4 with EOL
                .frag(0xbeef, 1480, true)
                .proto(17)
                .payload(16)
                .build();
  ASSERT_EQ(b.size(), 24u + 16);
  EXPECT_EQ(b[0], 0x46);
  EXPECT_EQ(at16(b, 2), 40);
  EXPECT_EQ(at16(b, 4), 0xbeef);
  EXPECT_EQ(at16(b, 6), 0x2000 | 185);
  EXPECT_EQ(b[9], 17);
  EXPECT_EQ(b[23], 0);
  EXPECT_TRUE(verify_checksums(Packet()
                                   .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                                   .ipv4("198.18.0.2", "203.0.113.10")
                                   .ip_options({0x01, 0x01, 0x01})
                                   .tcp(1, 2, tcpf::kAck)
                                   .build())
                  .empty());
}

TEST(PacketBuilder, OverridesLandBeforeChecksums) {
  Bytes b = Packet().ipv4("198.18.0.2", "203.0.113.10").ihl(4).tcp(1, 2, 0).doff(3).build();
  EXPECT_EQ(b[0], 0x44);
  EXPECT_EQ(b[20 + 12] >> 4, 3);
  // The header checksum still covers the 20 bytes the builder wrote.
  uint32_t sum = 0;
  for (size_t i = 0; i < 20; i += 2) sum += at16(b, i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
}

TEST(PacketBuilder, ShortenRewritesTheIpLengthTruncateDoesNot) {
  Packet p = Packet()
                 .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                 .ipv4("198.18.0.2", "203.0.113.10")
                 .tcp(1, 2, tcpf::kSyn);
  Bytes cut = Packet(p).truncate(14 + 20 + 10).build();
  EXPECT_EQ(cut.size(), 44u);
  EXPECT_EQ(at16(cut, 16), 40);
  Bytes sh = Packet(p).shorten(14 + 20 + 10).build();
  EXPECT_EQ(sh.size(), 44u);
  EXPECT_EQ(at16(sh, 16), 30);
  uint32_t sum = 0;  // the rewritten length is covered by a fresh header checksum
  for (size_t i = 14; i < 34; i += 2) sum += at16(sh, i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffu);
  Bytes v6 = Packet()
                 .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                 .ipv6("fd00:18::2", "2001:db8:100::10")
                 .udp(1, 2)
                 .shorten(14 + 40 + 4)
                 .build();
  EXPECT_EQ(at16(v6, 14 + 4), 4);
  Bytes padded = Packet(p).pad_to(80).build();
  EXPECT_EQ(padded.size(), 80u);
  EXPECT_EQ(at16(padded, 16), 40);
  EXPECT_TRUE(verify_checksums(padded).empty()) << joined(verify_checksums(padded));
}

TEST(PacketBuilder, IcmpErrorsQuoteACompleteInnerPacket) {
  Packet inner = Packet()
                     .ipv4("203.0.113.10", "198.18.0.2")
                     .tcp(80, 40000, tcpf::kAck)
                     .payload(1400)
                     .truncate(28);
  Bytes b = Packet()
                .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                .ipv4("198.18.0.254", "203.0.113.10")
                .icmp_frag_needed(1400, inner)
                .build();
  ASSERT_EQ(b.size(), 14u + 20 + 8 + 28);
  EXPECT_EQ(b[34], 3);
  EXPECT_EQ(b[35], 4);
  EXPECT_EQ(at16(b, 34 + 6), 1400);
  EXPECT_EQ(at16(b, 42 + 2), 1440);  // the quoted tot_len keeps the original length
  EXPECT_TRUE(verify_checksums(b).empty()) << joined(verify_checksums(b));

  Packet inner6 = Packet()
                      .ipv6("2001:db8:100::10", "fd00:18::2")
                      .tcp(80, 40000, tcpf::kAck)
                      .payload(1400)
                      .truncate(48);
  Bytes b6 = Packet()
                 .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                 .ipv6("fd00:18::fe", "2001:db8:100::10")
                 .icmp6_packet_too_big(1280, inner6)
                 .build();
  ASSERT_EQ(b6.size(), 14u + 40 + 8 + 48);
  EXPECT_EQ(b6[14 + 6], 58);
  EXPECT_TRUE(verify_checksums(b6).empty()) << joined(verify_checksums(b6));
}

// Every byte the checksums protect must be caught when it changes: this is what makes the
// verifier a real check of the data path's incremental updates.
TEST(ChecksumVerifier, CatchesEveryCoveredByteFlip) {
  const char* kCli = "02:00:00:00:00:02";
  const char* kLb = "02:00:00:00:00:01";
  struct Sample {
    const char* name;
    Bytes frame;
    size_t first_covered;  // earlier bytes (L2, IPv6 version/flow/hlim) have no checksum
    std::vector<size_t> uncovered;
  };
  Packet inner =
      Packet().ipv4("203.0.113.10", "198.18.0.2").tcp(80, 40000, tcpf::kAck).truncate(28);
  std::vector<Sample> samples = {
      {"tcp4",
       Packet()
           .eth(kCli, kLb)
           .ipv4("198.18.0.2", "203.0.113.10")
           .tcp(40000, 80, tcpf::kSyn)
           .payload(9)
           .build(),
       14,
       {}},
      {"udp4_vlan",
       Packet()
           .eth(kCli, kLb)
           .vlan(7)
           .ipv4("198.18.0.2", "203.0.113.10")
           .udp(40000, 53)
           .payload(5)
           .build(),
       18,
       {}},
      {"icmp_frag_needed",
       Packet()
           .eth(kCli, kLb)
           .ipv4("198.18.0.254", "203.0.113.10")
           .icmp_frag_needed(1400, inner)
           .build(),
       14,
       {}},
      // IPv6: only the addresses and everything after the fixed header are covered; the
      // extension headers are not part of the upper-layer checksum either.
      {"tcp6",
       Packet()
           .eth(kCli, kLb)
           .ipv6("fd00:18::2", "2001:db8:100::10")
           .tcp(40000, 80, tcpf::kSyn)
           .payload(3)
           .build(),
       14 + 8,
       {}},
      {"icmp6_echo",
       Packet().eth(kCli, kLb).ipv6("fd00:18::2", "2001:db8:100::10").icmp_echo(1, 2).build(),
       14 + 8,
       {}},
  };
  for (const Sample& s : samples) {
    ASSERT_TRUE(verify_checksums(s.frame).empty())
        << s.name << ": " << joined(verify_checksums(s.frame));
    for (size_t i = s.first_covered; i < s.frame.size(); i++) {
      Bytes f = s.frame;
      f[i] ^= 0x10;
      EXPECT_FALSE(verify_checksums(f).empty()) << s.name << ": flip at " << i << " unnoticed\n"
                                                << describe(f);
    }
  }
}

TEST(ChecksumVerifier, UdpZeroChecksumOnlyOnIpv4) {
  const char* kCli = "02:00:00:00:00:02";
  const char* kLb = "02:00:00:00:00:01";
  Bytes v4 = Packet()
                 .eth(kCli, kLb)
                 .ipv4("198.18.0.2", "203.0.113.10")
                 .udp(1, 2)
                 .udp_zero_csum()
                 .payload(4)
                 .build();
  EXPECT_EQ(at16(v4, 34 + 6), 0);
  EXPECT_TRUE(verify_checksums(v4).empty());
  Bytes v6 = Packet()
                 .eth(kCli, kLb)
                 .ipv6("fd00:18::2", "2001:db8:100::10")
                 .udp(1, 2)
                 .udp_zero_csum()
                 .payload(4)
                 .build();
  EXPECT_FALSE(verify_checksums(v6).empty());
}

TEST(ChecksumVerifier, SkipsL4OfFragmentsButChecksTheIpHeader) {
  const char* kCli = "02:00:00:00:00:02";
  const char* kLb = "02:00:00:00:00:01";
  Bytes later = Packet()
                    .eth(kCli, kLb)
                    .ipv4("198.18.0.2", "203.0.113.10")
                    .frag(5, 64, false)
                    .proto(17)
                    .payload(40)
                    .build();
  EXPECT_TRUE(verify_checksums(later).empty());
  later[14 + 8] ^= 1;  // ttl
  EXPECT_FALSE(verify_checksums(later).empty());
  Bytes later6 = Packet()
                     .eth(kCli, kLb)
                     .ipv6("fd00:18::2", "2001:db8:100::10")
                     .ipv6_frag(9, 64, false)
                     .proto(17)
                     .payload(40)
                     .build();
  EXPECT_TRUE(verify_checksums(later6).empty());
}

TEST(PacketDump, DiffMarksTheDifferingBytesAndDecodesBoth) {
  Packet p = Packet()
                 .eth("02:00:00:00:00:02", "02:00:00:00:00:01")
                 .ipv4("198.18.0.2", "203.0.113.10")
                 .tcp(40000, 80, tcpf::kSyn | tcpf::kAck);
  Bytes a = p.build();
  Bytes b = Packet(p).corrupt(20, 0x99).build();
  EXPECT_EQ(diff(a, a), "");
  std::string d = diff(a, b);
  EXPECT_NE(d.find("first difference at offset 20"), std::string::npos) << d;
  EXPECT_NE(d.find("^^"), std::string::npos) << d;
  EXPECT_NE(d.find("tcp 40000 > 80 flags SA"), std::string::npos) << d;
  EXPECT_NE(d.find("ipv4 198.18.0.2 > 203.0.113.10"), std::string::npos) << d;
}

}  // namespace
}  // namespace sluice::test
