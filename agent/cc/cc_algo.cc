// CcAlgorithm (include/sluice/cc/cc_algo.h): loads cc_aimd and registers sluice_aimd through a
// struct_ops link, pinned when there is a pin directory, adopted and updated in place by the
// next sluiced.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <elf.h>
#include <linux/bpf.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include <sluice/abi/cc.h>
#include <sluice/cc/cc_algo.h>
#include <sluice/cc/pins.h>
#include "cc_aimd.skel.h"

namespace sluice {

namespace {

// A struct_ops link (Linux 6.4) is newer than Debian 12's uapi headers (6.1) and libbpf (1.1):
// they lack the attach type and the map flag. BPF_F_BEFORE (6.6) tells newer headers, as in
// agent/conntrack/host_track.cc. The values are the kernel's stable uapi (enum
// bpf_attach_type, BPF_F_LINK), checked against the 6.18 kernel's BTF. libbpf 1.1's
// bpf_link_create() passes an attach type it does not know straight to the kernel.
#ifdef BPF_F_BEFORE
constexpr bpf_attach_type kStructOps = BPF_STRUCT_OPS;
#else
constexpr auto kStructOps = static_cast<bpf_attach_type>(44);
#endif
// BPF_F_LINK, a map-create flag of struct_ops maps (6.4, uapi 1U << 13): the map registers
// only through a link, and unregisters when the link goes.
#ifdef BPF_F_BEFORE
constexpr uint32_t kMapFlagLink = BPF_F_LINK;
#else
constexpr uint32_t kMapFlagLink = 1u << 13;
#endif

std::string link_hint(int err) {
  switch (err) {
    case EEXIST:
      return " (the name is registered already: by a sluiced with another pin directory, or "
             "a process that did not pin it)";
    case EINVAL:
    case EOPNOTSUPP:
      return " (does the kernel have struct_ops links? sluice_aimd needs Linux 6.4 or later)";
    case EPERM:
      return " (needs CAP_BPF and CAP_NET_ADMIN)";
    default:
      return "";
  }
}

// cc_aimd's ELF with the algorithm's name in the struct_ops value changed from SL_CC_OURS to
// `name`: libbpf 1.1 offers no way to edit a struct_ops map's value before load (its skeleton
// has no struct_ops section), so the object is edited before libbpf opens it. The name is the
// only string the .struct_ops section holds (the rest is zeros and program relocations).
Result<std::vector<char>> renamed_object(const void* data, size_t size, const std::string& name) {
  std::vector<char> elf(static_cast<const char*>(data), static_cast<const char*>(data) + size);
  if (name.empty() || name.size() >= SL_CC_NAME_MAX)
    return Error{EINVAL, "congestion control name '" + name + "': 1 to 15 characters"};
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(elf.data());
  if (size < sizeof(Elf64_Ehdr) || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shstrndx >= eh->e_shnum ||
      eh->e_shoff + uint64_t{eh->e_shnum} * sizeof(Elf64_Shdr) > size)
    return Error{EINVAL, "cc_aimd's embedded object is not the ELF64 this build expects"};
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(elf.data() + eh->e_shoff);
  const Elf64_Shdr& names = sh[eh->e_shstrndx];
  const std::string_view ours(SL_CC_OURS, sizeof(SL_CC_OURS));  // with its NUL
  for (unsigned i = 0; i < eh->e_shnum; i++) {
    if (names.sh_offset + sh[i].sh_name >= size || sh[i].sh_offset + sh[i].sh_size > size) continue;
    if (std::strcmp(elf.data() + names.sh_offset + sh[i].sh_name, ".struct_ops") != 0) continue;
    char* sec = elf.data() + sh[i].sh_offset;
    const std::string_view body(sec, sh[i].sh_size);
    const size_t at = body.find(ours);
    // The name field is SL_CC_NAME_MAX bytes, zero after the name: room for any valid name.
    if (at == std::string_view::npos || at + SL_CC_NAME_MAX > body.size()) break;
    std::memset(sec + at, 0, SL_CC_NAME_MAX);
    std::memcpy(sec + at, name.data(), name.size());
    return elf;
  }
  return Error{EINVAL, std::string("no '") + SL_CC_OURS + "' in cc_aimd's .struct_ops section"};
}

}  // namespace

Result<std::unique_ptr<CcAlgorithm>> CcAlgorithm::load(PinDir* pins, const std::string& name) {
  std::unique_ptr<CcAlgorithm> a(new CcAlgorithm());
  a->pins_ = pins;
  a->name_ = name;
  if (auto s = a->open(); !s) return s.error();
  bpf_map* ops = a->skel_->maps.sluice_aimd;
  if (int err = bpf_map__set_map_flags(ops, bpf_map__map_flags(ops) | kMapFlagLink))
    return sys_error("set BPF_F_LINK on struct_ops map sluice_aimd", err);

  // A pinned users map is the running instance's count: this one adds to it and takes from
  // it, and sockets of the old program release into it too.
  const bool have_users = pins && pins->holds(kCcAlgoUsersPin);
  if (have_users) {
    auto fd = pins->open_map(kCcAlgoUsersPin, sizeof(uint32_t), sizeof(uint64_t));
    if (!fd) return fd.error();
    if (int err = bpf_map__reuse_fd(a->skel_->maps.cc_algo_users, fd->get()))
      return sys_error("reuse pinned map " + pins->path_of(kCcAlgoUsersPin), err);
  }
  if (int err = cc_aimd_bpf__load(a->skel_))
    return sys_error("load BPF struct_ops cc_aimd (verifier log above)", err);

  // The map's value (the programs, the name) goes in by update_elem, which for a BPF_F_LINK
  // map only makes it ready; the link below registers it. libbpf 1.1 keeps the value it
  // built to itself, so it is written through bpf_map__attach_struct_ops, whose bpf_link is
  // a stand-in over the map's fd: disconnected, destroying it neither deletes nor closes.
  bpf_link* prep = bpf_map__attach_struct_ops(ops);
  if (!prep) return sys_error("write struct_ops map sluice_aimd");
  bpf_link__disconnect(prep);
  bpf_link__destroy(prep);
  const int map_fd = bpf_map__fd(ops);
  Status s =
      pins && pins->holds(kCcAlgoLinkPin) ? a->adopt(map_fd, have_users) : a->register_link(map_fd);
  if (!s) return s.error();
  return a;
}

// The skeleton, opened from the object as built or, for another name, renamed.
Status CcAlgorithm::open() {
  if (name_ == SL_CC_OURS) {
    skel_ = cc_aimd_bpf__open();
    if (!skel_) return sys_error("open BPF skeleton cc_aimd");
    return {};
  }
  size_t size = 0;
  const void* data = cc_aimd_bpf__elf_bytes(&size);
  auto elf = renamed_object(data, size, name_);
  if (!elf) return elf.error();
  elf_ = std::move(*elf);
  skel_ = static_cast<cc_aimd_bpf*>(calloc(1, sizeof(cc_aimd_bpf)));
  if (!skel_) return sys_error("open BPF skeleton cc_aimd", ENOMEM);
  if (int err = cc_aimd_bpf__create_skeleton(skel_))
    return sys_error("open BPF skeleton cc_aimd", err);
  skel_->skeleton->data = elf_.data();
  skel_->skeleton->data_sz = elf_.size();
  if (int err = bpf_object__open_skeleton(skel_->skeleton, nullptr))
    return sys_error("open BPF skeleton cc_aimd (as " + name_ + ")", err);
  return {};
}

// A pinned link: the running registration. This build's map goes into it in one step.
Status CcAlgorithm::adopt(int map_fd, bool have_users) {
  auto link = pins_->open(kCcAlgoLinkPin);
  if (!link) return link.error();
  if (!have_users) {
    spdlog::warn(
        "congestion control: {} is pinned without {}: sockets of the running program are not "
        "in this instance's count",
        pins_->path_of(kCcAlgoLinkPin), kCcAlgoUsersPin);
    if (auto s = pins_->pin(bpf_map__fd(skel_->maps.cc_algo_users), kCcAlgoUsersPin); !s) return s;
  }
  if (bpf_link_update(link->get(), map_fd, nullptr) == 0) {
    adopted_ = true;
    spdlog::info("congestion control: adopted {} at {}, this build's program swapped in", name_,
                 pins_->path_of(kCcAlgoLinkPin));
  } else {
    // The registration stays the old program's: it keeps working, only not with this build.
    const int err = errno;
    spdlog::warn(
        "congestion control: could not swap this build's {} into the pinned link {}: {} "
        "(errno {}); the running registration stays",
        name_, pins_->path_of(kCcAlgoLinkPin), std::strerror(err), err);
  }
  link_ = std::move(*link);
  return {};
}

// No pinned link: a new registration, pinned with the users map when there is a pin directory.
Status CcAlgorithm::register_link(int map_fd) {
  UniqueFd link(bpf_link_create(map_fd, 0, kStructOps, nullptr));
  if (!link.valid()) {
    const int err = errno;
    return sys_error("register congestion control " + name_ + " (struct_ops link)" + link_hint(err),
                     err);
  }
  if (pins_) {
    if (auto s = pins_->pin(link.get(), kCcAlgoLinkPin, "link"); !s) return s;
    if (!pins_->holds(kCcAlgoUsersPin)) {
      if (auto s = pins_->pin(bpf_map__fd(skel_->maps.cc_algo_users), kCcAlgoUsersPin); !s) {
        // Not half a registration: without its pin the link goes with `link` below.
        pins_->unpin(kCcAlgoLinkPin);
        return s;
      }
    }
  }
  link_ = std::move(link);
  spdlog::info("congestion control: registered {}{}", name_,
               pins_ ? " (pinned at " + pins_->path_of(kCcAlgoLinkPin) + ")" : "");
  return {};
}

CcAlgorithm::~CcAlgorithm() {
  // Without pins the link's last fd is ours: closing it unregisters sluice_aimd. With pins,
  // the pin keeps it registered for the next sluiced.
  if (link_.valid() && !pins_) spdlog::info("congestion control: unregistered {}", name_);
  link_.reset();
  if (skel_) cc_aimd_bpf__destroy(skel_);
}

int CcAlgorithm::users_fd() const { return bpf_map__fd(skel_->maps.cc_algo_users); }

Result<uint64_t> CcAlgorithm::users() const {
  const uint32_t zero = 0;
  uint64_t n = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.cc_algo_users), &zero, &n) != 0)
    return sys_error("read map cc_algo_users");
  return n;
}

Status CcAlgorithm::unregister_if_unused() {
  if (!link_.valid()) return {};
  auto n = users();
  if (!n) return n.error();
  if (*n != 0) {
    return Error{EBUSY, name_ + " stays registered: " + std::to_string(*n) + " socket" +
                            (*n == 1 ? " uses" : "s use") + " it"};
  }
  if (pins_) {
    pins_->unpin(kCcAlgoLinkPin);
    pins_->unpin(kCcAlgoUsersPin);
  }
  link_.reset();
  spdlog::info("congestion control: unregistered {} (no socket used it)", name_);
  return {};
}

}  // namespace sluice
