// The in-memory maps: what a test needs to see of an apply, with the kernel's semantics where
// they matter (arrays are preallocated and zeroed; a delete of a missing key is a no-op).
#include <sluice/apply/memory_maps.h>

#include <arpa/inet.h>

#include <sluice/abi/hash.h>
#include <sluice/core/net.h>

namespace sluice {

namespace {

std::string addr_name(const sl_addr_key& a) { return format_ip(a.addr, a.family); }

}  // namespace

MemoryMaps::MemoryMaps(uint32_t max_vips, uint32_t max_backends)
    : backends(max_backends),
      vip_table(max_vips),
      index(1u << SL_VIP_INDEX_BITS, 0),
      filter(SL_FILTER_KINDS * SL_ADDR_FILTER_WORDS, 0) {}

// Every write that can fail goes through here, so a test can stop an apply at any named write
// and check what the maps were left holding.
Status MemoryMaps::attempt(const std::string& line) {
  if (fail_on)
    if (auto e = fail_on(line)) return *e;
  log.push_back(line);
  return {};
}

Status MemoryMaps::write_filter(const std::vector<uint64_t>& words) {
  if (auto s = attempt("addr_filter"); !s) return s;
  filter = words;
  return {};
}

Status MemoryMaps::write_index(const std::vector<uint32_t>& slots) {
  if (auto s = attempt("vip_index"); !s) return s;
  index = slots;
  return {};
}

Status MemoryMaps::write_backend(uint32_t id, const sl_backend& value) {
  if (id >= backends.size()) return Error{E2BIG, "backend id out of range"};
  if (auto s = attempt("backends " + std::to_string(id)); !s) return s;
  backends[id] = value;
  return {};
}

// Resets and deletes are logged but cannot fail: the real ones return nothing either
// (datapath_maps.cc), so the plan never depends on them succeeding.
void MemoryMaps::reset_backend_stats(uint32_t id) {
  log.push_back("reset backend " + std::to_string(id));
}

void MemoryMaps::reset_vip_stats(uint32_t vip_id) {
  log.push_back("reset vip " + std::to_string(vip_id));
}

Status MemoryMaps::write_rev_nat(const sl_endpoint& backend, const sl_rev_nat& value) {
  const std::string key = format_endpoint(backend);
  if (auto s = attempt("rev_nat " + key); !s) return s;
  rev_nats[key] = {backend, value};
  return {};
}

void MemoryMaps::delete_rev_nat(const sl_endpoint& backend) {
  const std::string key = format_endpoint(backend);
  log.push_back("-rev_nat " + key);
  rev_nats.erase(key);
}

// Bounds as the real `maglev` map's (SL_RINGS_PER_VIP rings per VIP id), so a plan that would
// write outside it fails here as it would against the kernel.
Status MemoryMaps::write_ring(uint32_t ring_id, const std::vector<uint32_t>& ring) {
  if (ring_id >= vip_table.size() * SL_RINGS_PER_VIP || ring.size() != SL_MAGLEV_SIZE)
    return Error{ERANGE, "ring " + std::to_string(ring_id) + " is outside map 'maglev'"};
  if (auto s = attempt("ring " + std::to_string(ring_id)); !s) return s;
  rings[ring_id] = ring;
  return {};
}

Status MemoryMaps::write_vip_entry(uint32_t vip_id, const sl_vip_entry& entry) {
  if (vip_id >= vip_table.size()) return Error{E2BIG, "VIP id out of range"};
  if (auto s = attempt("vip_table " + std::to_string(vip_id)); !s) return s;
  vip_table[vip_id] = entry;
  return {};
}

Status MemoryMaps::write_vip_addr(const sl_addr_key& addr) {
  if (auto s = attempt("vip_addrs " + addr_name(addr)); !s) return s;
  vip_addrs[addr_name(addr)] = addr;
  return {};
}

void MemoryMaps::delete_vip_addr(const sl_addr_key& addr) {
  log.push_back("-vip_addrs " + addr_name(addr));
  vip_addrs.erase(addr_name(addr));
}

Status MemoryMaps::write_vip_hash(const sl_endpoint& vip, uint32_t vip_id) {
  const std::string key = format_endpoint(vip);
  if (auto s = attempt("vips " + key + "=" + std::to_string(vip_id)); !s) return s;
  vips[key] = {vip, vip_id};
  return {};
}

void MemoryMaps::delete_vip_hash(const sl_endpoint& vip) {
  const std::string key = format_endpoint(vip);
  log.push_back("-vips " + key);
  vips.erase(key);
}

void MemoryMaps::set_rev_nat_wildcards(uint32_t count) {
  log.push_back("rev_nat_wildcards " + std::to_string(count));
  rev_nat_wildcards = count;
}

Status MemoryMaps::write_info(uint64_t gen) {
  if (auto s = attempt("info " + std::to_string(gen)); !s) return s;
  generation = gen;
  return {};
}

// In name order, not the kernel's hash order: read_state() sorts by id, so neither matters.
Result<std::vector<std::pair<sl_endpoint, uint32_t>>> MemoryMaps::read_vip_hash() const {
  std::vector<std::pair<sl_endpoint, uint32_t>> out;
  for (const auto& [name, entry] : vips) out.push_back(entry);
  return out;
}

Result<sl_vip_entry> MemoryMaps::read_vip_entry(uint32_t vip_id) const {
  if (vip_id >= vip_table.size()) return Error{ENOENT, "read map 'vip_table'"};
  return vip_table[vip_id];
}

Result<sl_backend> MemoryMaps::read_backend(uint32_t id) const {
  if (id >= backends.size()) return Error{ENOENT, "read map 'backends'"};
  return backends[id];
}

bool MemoryMaps::has_rev_nat(const sl_endpoint& backend) const {
  return rev_nats.count(format_endpoint(backend)) != 0;
}

std::optional<uint32_t> MemoryMaps::vip_id(const sl_endpoint& vip) const {
  auto it = vips.find(format_endpoint(vip));
  if (it == vips.end()) return std::nullopt;
  return it->second.second;
}

std::optional<sl_rev_nat> MemoryMaps::rev_nat(const sl_endpoint& backend) const {
  auto it = rev_nats.find(format_endpoint(backend));
  if (it == rev_nats.end()) return std::nullopt;
  return it->second.second;
}

bool MemoryMaps::has_vip_addr(const sl_addr& addr, uint8_t family) const {
  return vip_addrs.count(format_ip(addr, family)) != 0;
}

// The slot the data path tests (abi/hash.h), so a test checks the filter as a packet sees it.
bool MemoryMaps::filter_bit(uint32_t kind, const sl_addr& addr) const {
  const uint32_t slot = sl_addr_filter_slot(&addr);
  return filter[kind * SL_ADDR_FILTER_WORDS + (slot >> 6)] & (1ull << (slot & 63));
}

int MemoryMaps::find(const std::string& line, size_t from) const {
  for (size_t i = from; i < log.size(); ++i)
    if (log[i] == line) return static_cast<int>(i);
  return -1;
}

}  // namespace sluice
