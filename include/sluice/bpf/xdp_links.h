// The XDP links of the loaded xdp_lb, one per interface, pinned in the pin directory when
// there is one (link_xdp_<ifname>) so that they outlive the agent; and the VLANs each
// interface carries (`vlan_members`).
#pragma once

#include <sluice/bpf/pin_dir.h>
#include <sluice/config/config.h>
#include <sluice/core/fd.h>
#include <sluice/core/result.h>

#include <string>
#include <vector>

namespace sluice {

class XdpLinks {
 public:
  // Attaches `prog_fd` in native (driver) mode to each interface of the calling thread's
  // network namespace and adds it to the redirect devmap `tx_ports_fd`. With `pins` the links
  // are pinned there; a link already pinned for an interface is kept and gets `prog_fd`
  // swapped in atomically, and pinned links of interfaces not in `ifaces` are detached. Can be
  // called again with a new list (reload).
  Status attach(int prog_fd, int tx_ports_fd, const std::vector<std::string>& ifaces, PinDir* pins);
  // Detaches from every interface: unpins the links and closes them.
  void detach(PinDir* pins);
  // Closes the links and leaves their pins: the program stays attached (hitless restart).
  void release() { links_.clear(); }

 private:
  struct Attachment {
    std::string ifname;
    unsigned ifindex = 0;
    UniqueFd link;
    bool pinned = false;
  };
  void drop_unlisted(int tx_ports_fd, const std::vector<std::string>& ifaces, PinDir* pins);
  Status attach_one(int prog_fd, const std::string& name, PinDir* pins);
  bool have(const std::string& ifname) const;

  std::vector<Attachment> links_;
};

// Makes `vlan_members` hold exactly the VLANs each interface carries (ifindex resolved in the
// calling thread's network namespace): entries of VLANs and interfaces no longer listed are
// deleted, new ones added.
Status sync_vlans(int vlan_members_fd, const std::vector<InterfaceConfig>& ifaces);

}  // namespace sluice
