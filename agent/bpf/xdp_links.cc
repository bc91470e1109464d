// XDP attachment through bpf_links (xdp_links.h). Links, not netlink attachment, because a
// pinned link keeps the program attached with no process holding it (Hitless restart), and
// bpf_link_update swaps the program with no instant where the interface runs none.

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include <sluice/abi/abi.h>
#include <sluice/bpf/xdp_links.h>

namespace sluice {

namespace {

constexpr const char* kLinkPinPrefix = "link_xdp_";

std::string link_pin(const std::string& ifname) { return kLinkPinPrefix + ifname; }

bool listed(const std::vector<std::string>& ifaces, const std::string& name) {
  return std::find(ifaces.begin(), ifaces.end(), name) != ifaces.end();
}

}  // namespace

bool XdpLinks::have(const std::string& ifname) const {
  for (const Attachment& a : links_)
    if (a.ifname == ifname) return true;
  return false;
}

// Interfaces no longer listed, ours and those whose links an earlier sluiced pinned.
void XdpLinks::drop_unlisted(int tx_ports_fd, const std::vector<std::string>& ifaces,
                             PinDir* pins) {
  for (auto it = links_.begin(); it != links_.end();) {
    if (listed(ifaces, it->ifname)) {
      ++it;
      continue;
    }
    if (it->pinned && pins) pins->unpin(link_pin(it->ifname));
    bpf_map_delete_elem(tx_ports_fd, &it->ifindex);
    spdlog::info("XDP detached from {}", it->ifname);
    it = links_.erase(it);  // closing the last reference detaches
  }
  if (!pins) return;
  // Links pinned by an earlier sluiced for interfaces this config dropped: we hold no fd to
  // them, so removing the pin is what detaches.
  for (const std::string& name : pins->list()) {
    if (name.rfind(kLinkPinPrefix, 0) != 0) continue;
    const std::string ifname = name.substr(std::strlen(kLinkPinPrefix));
    if (listed(ifaces, ifname) || have(ifname)) continue;
    pins->unpin(name);
    spdlog::info("XDP detached from {} (not in the config any more)", ifname);
  }
}

Status XdpLinks::attach_one(int prog_fd, const std::string& name, PinDir* pins) {
  const unsigned ifindex = if_nametoindex(name.c_str());
  if (ifindex == 0)
    return sys_error("interface '" + name + "' not found in this network namespace");
  Attachment a{name, ifindex, UniqueFd(), false};
  if (pins) {
    if (auto link = pins->open(link_pin(name))) {
      // A link left by an earlier sluiced: swap our program in, atomically.
      if (bpf_link_update(link->get(), prog_fd, nullptr) != 0)
        return sys_error("replace the XDP program in the link pinned at " +
                         pins->path_of(link_pin(name)));
      a.link = std::move(*link);
      a.pinned = true;
      spdlog::info("XDP on {} (ifindex {}) taken over, program replaced in place", name, ifindex);
    }
  }
  if (!a.link.valid()) {
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
    const int fd = bpf_link_create(prog_fd, static_cast<int>(ifindex), BPF_XDP, &opts);
    if (fd < 0)
      return sys_error("attach XDP (native mode) to '" + name + "'" +
                       (errno == EBUSY ? " (another XDP program is attached)" : ""));
    a.link.reset(fd);
    if (pins) {
      if (auto s = pins->pin(fd, link_pin(name), "XDP link"); !s) return s;
      a.pinned = true;
    }
    spdlog::info("XDP attached to {} (ifindex {}, native mode)", name, ifindex);
  }
  links_.push_back(std::move(a));
  return {};
}

Status XdpLinks::attach(int prog_fd, int tx_ports_fd, const std::vector<std::string>& ifaces,
                        PinDir* pins) {
  drop_unlisted(tx_ports_fd, ifaces, pins);
  for (const std::string& name : ifaces) {
    if (have(name)) continue;
    // Kept first: a failure below still detaches it on teardown.
    if (auto s = attach_one(prog_fd, name, pins); !s) return s;
    // The devmap resolves the ifindex in the updater's network namespace: ours.
    const unsigned ifindex = links_.back().ifindex;
    if (bpf_map_update_elem(tx_ports_fd, &ifindex, &ifindex, BPF_ANY) != 0)
      return sys_error("update map 'tx_ports'");
  }
  return {};
}

void XdpLinks::detach(PinDir* pins) {
  for (Attachment& a : links_) {
    if (a.pinned && pins) pins->unpin(link_pin(a.ifname));
    a.link.reset();  // the last reference to an unpinned link: the kernel detaches XDP
    spdlog::info("XDP detached from {}", a.ifname);
  }
  links_.clear();
}

Status sync_vlans(int vlan_members_fd, const std::vector<InterfaceConfig>& ifaces) {
  auto less = [](const sl_vlan_key& a, const sl_vlan_key& b) {
    return std::tie(a.ifindex, a.vid) < std::tie(b.ifindex, b.vid);
  };
  std::vector<sl_vlan_key> want;
  for (const InterfaceConfig& i : ifaces) {
    if (i.vlans.empty()) continue;
    const unsigned ifindex = if_nametoindex(i.name.c_str());
    if (ifindex == 0)
      return sys_error("interface '" + i.name + "' not found in this network namespace");
    for (uint16_t vid : i.vlans) {
      sl_vlan_key k{};
      k.ifindex = ifindex;
      k.vid = vid;
      want.push_back(k);
    }
  }
  std::sort(want.begin(), want.end(), less);
  // What the map holds: written by this agent, or by the one whose pins were adopted.
  std::vector<sl_vlan_key> have;
  sl_vlan_key key{}, next{};
  void* prev = nullptr;
  while (bpf_map_get_next_key(vlan_members_fd, prev, &next) == 0) {
    have.push_back(next);
    key = next;
    prev = &key;
  }
  std::sort(have.begin(), have.end(), less);
  // New VLANs first: a frame of a VLAN that stays carried is never passed by mistake.
  const uint32_t one = 1;
  for (const sl_vlan_key& k : want) {
    if (std::binary_search(have.begin(), have.end(), k, less)) continue;
    if (bpf_map_update_elem(vlan_members_fd, &k, &one, BPF_ANY) != 0)
      return sys_error("update map 'vlan_members'");
  }
  for (const sl_vlan_key& k : have) {
    if (std::binary_search(want.begin(), want.end(), k, less)) continue;
    if (bpf_map_delete_elem(vlan_members_fd, &k) != 0 && errno != ENOENT)
      return sys_error("delete from map 'vlan_members'");
  }
  return {};
}

}  // namespace sluice
