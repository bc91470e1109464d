// The data-path maps in memory: a MapWriter and MapReader that keep what was written, and a
// log of every call in order, so that tests can check an apply's decisions (ids, retire,
// reuse, rebuild) and the order of its writes without a kernel. A write can be made to fail
// (fail_on) to stop an apply half-way.
//
// Log lines, one per call: "addr_filter", "vip_index", "backends <id>", "reset backend <id>",
// "reset vip <id>", "rev_nat <endpoint>", "ring <ring id>", "vip_table <id>",
// "vip_addrs <address>", "vips <endpoint>=<id>", "rev_nat_wildcards <n>", "info <generation>";
// deletes are the line of their write with a leading '-' ("-vips <endpoint>").
// <endpoint> as format_endpoint() writes it, e.g. 198.19.0.1:80/tcp.
#pragma once

#include <sluice/apply/map_io.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

class MemoryMaps : public MapWriter, public MapReader {
 public:
  MemoryMaps(uint32_t max_vips, uint32_t max_backends);

  Status write_filter(const std::vector<uint64_t>& words) override;
  Status write_index(const std::vector<uint32_t>& slots) override;
  Status write_backend(uint32_t id, const sl_backend& value) override;
  void reset_backend_stats(uint32_t id) override;
  void reset_vip_stats(uint32_t vip_id) override;
  Status write_rev_nat(const sl_endpoint& backend, const sl_rev_nat& value) override;
  void delete_rev_nat(const sl_endpoint& backend) override;
  Status write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring) override;
  Status write_vip_entry(uint32_t vip_id, const sl_vip_entry& entry) override;
  Status write_vip_addr(const sl_addr_key& addr) override;
  void delete_vip_addr(const sl_addr_key& addr) override;
  Status write_vip_hash(const sl_endpoint& vip, uint32_t vip_id) override;
  void delete_vip_hash(const sl_endpoint& vip) override;
  void set_rev_nat_wildcards(uint32_t count) override;
  Status write_info(uint64_t generation) override;

  Result<std::vector<std::pair<sl_endpoint, uint32_t>>> read_vip_hash() const override;
  Result<sl_vip_entry> read_vip_entry(uint32_t vip_id) const override;
  Result<sl_backend> read_backend(uint32_t id) const override;
  bool has_rev_nat(const sl_endpoint& backend) const override;

  // Lookups for tests.
  std::optional<uint32_t> vip_id(const sl_endpoint& vip) const;
  std::optional<sl_rev_nat> rev_nat(const sl_endpoint& backend) const;
  bool has_vip_addr(const sl_addr& addr, uint8_t family) const;
  bool filter_bit(uint32_t kind, const sl_addr& addr) const;
  // The index of the first log line equal to `line` at or after `from`; -1 if none.
  int find(const std::string& line, size_t from = 0) const;

  // The map contents. Arrays are preallocated, as in the kernel.
  std::vector<sl_backend> backends;                 // by backend id
  std::vector<sl_vip_entry> vip_table;              // by VIP id
  std::map<uint32_t, std::vector<uint32_t>> rings;  // by ring id, the rings ever written
  std::map<std::string, std::pair<sl_endpoint, uint32_t>> vips;        // by format_endpoint
  std::map<std::string, sl_addr_key> vip_addrs;                        // by address
  std::map<std::string, std::pair<sl_endpoint, sl_rev_nat>> rev_nats;  // by format_endpoint
  std::vector<uint32_t> index;
  std::vector<uint64_t> filter;
  uint32_t rev_nat_wildcards = 0;
  uint64_t generation = 0;

  std::vector<std::string> log;
  // Asked before every write that can fail, with its log line: an Error fails the write, which
  // then changes nothing (and is not logged).
  std::function<std::optional<Error>(const std::string& line)> fail_on;

 private:
  Status attempt(const std::string& line);
};

}  // namespace sluice
