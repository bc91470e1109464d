// What apply needs of the data-path maps, as two interfaces: the writes an apply plan is made
// of (MapWriter) and the reads that rebuild the agent's view (MapReader). The real
// implementation is over the map fds (bpf/datapath_maps.h); MemoryMaps (memory_maps.h) keeps
// them in memory so that plans can be tested without a kernel.
//
// Writes that return Status stop an apply when they fail; the void ones are the best-effort
// kind the apply carries on after (a delete of what is not there, fresh counters).
#pragma once

#include <sluice/abi/abi.h>
#include <sluice/core/result.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace sluice {

class MapWriter {
 public:
  virtual ~MapWriter() = default;
  // The whole address pre-filter (SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS words) and the whole
  // VIP index (2^SL_VIP_INDEX_BITS slots): an implementation may write only what changed.
  virtual Status write_filter(const std::vector<uint64_t>& words) = 0;
  virtual Status write_index(const std::vector<uint32_t>& slots) = 0;
  virtual Status write_backend(uint32_t id, const sl_backend& value) = 0;
  // Zeroes the id's cached next hop and traffic counters: a reused id starts clean.
  virtual void reset_backend_stats(uint32_t id) = 0;
  virtual void reset_vip_stats(uint32_t vip_id) = 0;
  virtual Status write_rev_nat(const sl_endpoint& backend, const sl_rev_nat& value) = 0;
  virtual void delete_rev_nat(const sl_endpoint& backend) = 0;
  // Ring `ring_id` of `maglev`, SL_MAGLEV_SIZE slots; visible to the data path before any
  // later write_vip_entry() that switches a VIP to it.
  virtual Status write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring) = 0;
  virtual Status write_vip_entry(uint32_t vip_id, const sl_vip_entry& entry) = 0;
  virtual Status write_vip_addr(const sl_addr_key& addr) = 0;
  virtual void delete_vip_addr(const sl_addr_key& addr) = 0;
  virtual Status write_vip_hash(const sl_endpoint& vip, uint32_t vip_id) = 0;
  virtual void delete_vip_hash(const sl_endpoint& vip) = 0;
  // How many rev_nat keys have port 0 (the data path tries the wildcard lookup only then).
  virtual void set_rev_nat_wildcards(uint32_t count) = 0;
  // `info`, with the generation of the config now applied.
  virtual Status write_info(uint64_t generation) = 0;
};

class MapReader {
 public:
  virtual ~MapReader() = default;
  // `vips`: every (VIP endpoint, VIP id).
  virtual Result<std::vector<std::pair<sl_endpoint, uint32_t>>> read_vip_hash() const = 0;
  virtual Result<sl_vip_entry> read_vip_entry(uint32_t vip_id) const = 0;
  virtual Result<sl_backend> read_backend(uint32_t id) const = 0;
  virtual bool has_rev_nat(const sl_endpoint& backend) const = 0;
};

}  // namespace sluice
