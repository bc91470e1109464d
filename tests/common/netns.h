// Test helpers that build a private network world: RAII network namespaces, veth pairs and a
// shell runner. Every integration and packet test uses these so that nothing depends on the
// host's interfaces, addresses or ports, and nothing is left behind on any exit path.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::test {

struct CmdResult {
  int status = -1;  // exit code; 128 + signal when killed; -1 when it could not be started
  std::string out;  // stdout and stderr, interleaved as written
};

// Runs `cmd` with /bin/sh -c and waits for the shell. Output goes to an anonymous memory file
// instead of a pipe, so a command that leaves a daemon running in the background (`cmd &`)
// does not keep run() waiting for EOF. stdin is /dev/null.
CmdResult run(const std::string& cmd);

// "sl-<tag>-<pid>-<counter>": unique per process and call. The pid lets the stale-namespace
// sweep below recognise names left by a run that crashed.
std::string unique_name(std::string_view tag);

// Quotes `s` for /bin/sh as one word.
std::string shell_quote(std::string_view s);

namespace detail {
// Moves the calling thread into the namespace behind `fd`; returns an fd of the previous one.
// Throws std::system_error on failure.
int enter_netns(int fd);
// Moves the calling thread back and closes `prev_fd`. A thread stranded in a test namespace
// would make every later socket of the test land in the wrong world, so this aborts on failure.
void restore_netns(int prev_fd) noexcept;
}  // namespace detail

class NetNs {
 public:
  // Creates namespace unique_name(tag) and brings its loopback up. Throws std::runtime_error
  // (with the command's output) on failure, after removing whatever was created.
  explicit NetNs(std::string_view tag);
  // Kills every process still inside (`ip netns pids`), then deletes the namespace.
  ~NetNs();
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  const std::string& name() const { return name_; }
  // `ip netns exec <name> sh -c '<cmd>'`.
  CmdResult exec(const std::string& cmd) const;
  // exec(); throws std::runtime_error naming the namespace, command, status and output when
  // the command fails. GoogleTest reports an exception from SetUp()/TEST bodies as a failure.
  void must(const std::string& cmd) const;
  // O_RDONLY fd of /run/netns/<name>, owned by this object.
  int fd() const { return fd_; }

  // Runs fn() with the calling thread inside this namespace and restores the previous netns
  // afterwards, also when fn() throws. Sockets created inside keep this namespace for their
  // whole life, so a test can create them here and use them from any thread.
  template <class F>
  auto in(F&& fn) const -> decltype(fn()) {
    struct Restore {
      int prev;
      ~Restore() { detail::restore_netns(prev); }
    } restore{detail::enter_netns(fd_)};
    return std::forward<F>(fn)();
  }

 private:
  std::string name_;
  int fd_ = -1;
};

// Creates a veth pair with `if_a` inside `a` and `if_b` inside `b`, both up. The pair is created
// directly in the target namespaces, so names never collide with host interfaces.
void make_veth(const NetNs& a, const std::string& if_a, const NetNs& b, const std::string& if_b);
// Interface index of `ifname` inside `ns`; throws when it does not exist.
unsigned ifindex(const NetNs& ns, const std::string& ifname);
// MAC address of `ifname` inside `ns`, as "aa:bb:cc:dd:ee:ff".
std::string mac_of(const NetNs& ns, const std::string& ifname);

// Why this host cannot run the namespace/BPF tests ("needs root", "no /sys/kernel/btf/vmlinux",
// "bpffs not mountable: ...", "needs iproute2 'ip'"), or nullopt when it can. Mounts bpffs
// if needed.
std::optional<std::string> skip_reason();
// Mounts bpffs at /sys/fs/bpf unless one is already there. Throws std::system_error on failure.
void ensure_bpffs();

// Deletes namespaces named like unique_name() output whose creating process is gone, so runs
// that crashed before their destructors ran do not accumulate. Called once per process by the
// first NetNs; cheap (one `ip netns list`).
void sweep_stale_namespaces();

}  // namespace sluice::test
