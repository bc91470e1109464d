// The real MapWriter and MapReader (apply/map_io.h): the maps of a loaded xdp_lb, through
// their fds, with the rings written through a mapping of `maglev`. Also the data path's side of
// the retired-id rule: which retired backend ids no flow names any more.
#pragma once

#include <sluice/apply/map_io.h>
#include <sluice/apply/plan.h>
#include <sluice/bpf/maps.h>
#include <sluice/config/config.h>

#include <cstdint>
#include <vector>

namespace sluice {

// The sizes of the maps, fixed when they are created.
struct Limits {
  uint32_t max_vips = SL_DEFAULT_MAX_VIPS;
  uint32_t max_backends = SL_DEFAULT_MAX_BACKENDS;
  uint32_t conntrack_entries = SL_DEFAULT_CT_ENTRIES;
  uint32_t pending_entries = 0;  // ct_pending; 0: as many as conntrack_entries
  uint32_t ct_pending_size() const { return pending_entries ? pending_entries : conntrack_entries; }
  bool operator==(const Limits&) const = default;
};

// The globals of the loaded program (its .bss) that the agent sets.
struct DatapathGlobals {
  __u32* rev_nat_wildcards = nullptr;  // sl_rev_nat_wildcards
  __u64* ct_established_ns = nullptr;  // sl_ct_established_ns
};

class DatapathMaps : public MapWriter, public MapReader {
 public:
  DatapathMaps() = default;
  ~DatapathMaps() override;
  DatapathMaps(const DatapathMaps&) = delete;
  DatapathMaps& operator=(const DatapathMaps&) = delete;

  // Maps `maglev` for write_ring(). `fresh`: the maps were just created, so the pre-filter and
  // the index are known to hold zeros; otherwise (adopted) the first write of each is whole.
  Status init(const MapFds& fds, const Limits& limits, DatapathGlobals globals, bool fresh);
  // The conntrack timeouts write_info() publishes.
  void set_timeouts(const ConntrackTimeouts& t) { timeouts_ = t; }
  // The budget of one-sided (dsr) flows in `conntrack` write_info() publishes (0: none).
  void set_one_sided_max(uint32_t n) { one_sided_max_ = n; }

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

 private:
  MapFds fds_;
  Limits limits_;
  DatapathGlobals globals_;
  ConntrackTimeouts timeouts_;
  uint32_t one_sided_max_ = 0;
  uint32_t* rings_ = nullptr;  // `maglev`, mmapped
  size_t rings_bytes_ = 0;
  uint64_t ring_slots_ = 0;
  // What `vip_index` and `addr_filter` hold, as this object last wrote them (it is their only
  // writer): only the slots that differ are written (a full write of vip_index is 65536
  // elements). Empty: not known (adopted maps, a failed write), the next write is a full one.
  std::vector<uint32_t> index_written_;
  std::vector<uint64_t> filter_written_;
};

// Whether a retired backend id may be given to a new backend: no live connection and no
// conntrack entry of any state, in either table, names it. Otherwise a late segment of one of
// its finished flows (a retransmitted FIN, a SYN on its TIME_WAIT tuple) would reach whichever
// backend takes the id next. The tables are read on the first question, once: make one per
// apply.
IdReusable reusable_ids(const MapFds& fds, uint32_t max_backends);

}  // namespace sluice
