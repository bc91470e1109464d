// The loaded XDP load balancer: owns the skeleton, the XDP links and the pins. Destroying it
// detaches XDP from every interface and removes the pins it created.
#pragma once

#include <sluice/config.h>
#include <sluice/fd.h>
#include <sluice/maps.h>
#include <sluice/result.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct xdp_lb_bpf;

namespace sluice {

struct Limits {
  uint32_t max_vips = SL_DEFAULT_MAX_VIPS;
  uint32_t max_backends = SL_DEFAULT_MAX_BACKENDS;
  uint32_t conntrack_entries = SL_DEFAULT_CT_ENTRIES;
};

class Datapath {
 public:
  // Opens the skeleton, sizes the maps from `limits` and loads the program (verifier).
  static Result<std::unique_ptr<Datapath>> load(const Limits& limits);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Writes the config's VIPs, backends and Maglev rings into empty maps. Each VIP becomes
  // visible to the data path only after its backends and ring are in place.
  Status apply(const Config& cfg);
  // Takes a backend out of (or back into) the selection for new flows: its VIP's Maglev ring
  // is rebuilt without (with) it into the VIP's staging ring, then the VIP switches rings in
  // one map update, so no packet sees a half-written ring. Flows already in conntrack keep
  // their backend. With no usable backend left, new flows are dropped (no_backend).
  Status set_backend_up(uint32_t backend_id, bool up);
  // Weight 0 drains: no new flows, existing ones stay. Same ring switch as above.
  Status set_backend_weight(uint32_t backend_id, uint16_t weight);
  // The backend id the config's vips[vip_index].backends[backend_index] was given by apply().
  std::optional<uint32_t> backend_id(size_t vip_index, size_t backend_index) const;

  // Refreshes the data path's coarse clock (sl_now_ns); call every SL_CLOCK_TICK_MS.
  void tick();
  // Attaches XDP in native (driver) mode to each interface of the calling thread's network
  // namespace and adds it to the redirect devmap.
  Status attach(const std::vector<std::string>& ifaces);
  void detach();
  // Pins every map under `dir` (created; must not hold pins already), `info` last.
  Status pin(const std::string& dir);
  void unpin();

  const MapFds& fds() const { return fds_; }
  // The XDP program, e.g. for BPF_PROG_TEST_RUN.
  int prog_fd() const;

 private:
  Datapath() = default;
  struct BackendSlot {
    uint32_t id = 0;
    std::string key;  // Maglev permutation key: "addr:port"
    uint16_t weight = 0;
    bool up = true;
  };
  struct VipSlot {
    sl_vip_entry entry{};
    std::vector<BackendSlot> backends;
  };
  // Writes the ring of `v` from its usable backends into the ring it does not use now, then
  // points the VIP at it.
  Status publish_ring(VipSlot& v);
  std::pair<VipSlot*, BackendSlot*> find_backend(uint32_t id);
  std::vector<VipSlot> vips_;
  struct Attachment {
    std::string ifname;
    unsigned ifindex = 0;
    UniqueFd link;
  };
  xdp_lb_bpf* skel_ = nullptr;
  Limits limits_;
  MapFds fds_;
  std::vector<Attachment> links_;
  std::string pin_dir_;
  std::vector<std::string> pinned_;
};

}  // namespace sluice
