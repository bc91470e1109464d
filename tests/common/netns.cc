#include "netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace sluice::test {
namespace {

constexpr unsigned long kBpfFsMagic = 0xcafe4a11;  // BPF_FS_MAGIC from linux/magic.h

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::string describe(const std::string& what, const CmdResult& r) {
  std::ostringstream os;
  os << what << " -> exit " << r.status;
  if (!r.out.empty()) os << "\n" << r.out;
  return os.str();
}

// Kills whatever still runs inside `name` and removes it. Used by the destructor, the failure
// path of the constructor and the stale sweep; never throws.
void destroy_netns(const std::string& name) noexcept {
  try {
    CmdResult pids = run("ip netns pids " + shell_quote(name));
    std::istringstream is(pids.out);
    pid_t pid;
    while (is >> pid) {
      // Never signal ourselves: the main thread may have entered the namespace with setns().
      if (pid > 0 && pid != getpid()) kill(pid, SIGKILL);
    }
    run("ip netns del " + shell_quote(name));
  } catch (...) {
  }
}

}  // namespace

std::string shell_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  q += "'";
  return q;
}

CmdResult run(const std::string& cmd) {
  CmdResult result;
  // A memfd rather than a pipe: background children of `cmd` inherit the output fd, and with a
  // pipe we would wait for them to exit before seeing EOF.
  int out_fd = memfd_create("sluice-test-run", MFD_CLOEXEC);
  if (out_fd < 0) {
    result.out = "memfd_create: " + std::string(strerror(errno));
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // dup2 clears FD_CLOEXEC on the target, so the shell keeps fds 1 and 2 only.
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = -1;
  int err =
      posix_spawn(&pid, "/bin/sh", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    close(out_fd);
    result.out = "posix_spawn /bin/sh: " + std::string(strerror(err));
    return result;
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) {
      wstatus = -1;
      break;
    }
  }
  if (wstatus == -1) {
    result.status = -1;
  } else if (WIFEXITED(wstatus)) {
    result.status = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.status = 128 + WTERMSIG(wstatus);
  }
  // Read what the shell wrote (background children may still append; we take what is there).
  char buf[4096];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(out_fd, buf, sizeof(buf), off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  close(out_fd);
  return result;
}

std::string unique_name(std::string_view tag) {
  static std::atomic<unsigned> counter{0};
  return "sl-" + std::string(tag) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(counter.fetch_add(1));
}

namespace detail {

int enter_netns(int fd) {
  int prev = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (prev < 0) throw_errno("open /proc/thread-self/ns/net");
  if (setns(fd, CLONE_NEWNET) != 0) {
    int saved = errno;
    close(prev);
    errno = saved;
    throw_errno("setns(CLONE_NEWNET)");
  }
  return prev;
}

void restore_netns(int prev_fd) noexcept {
  if (setns(prev_fd, CLONE_NEWNET) != 0) {
    fprintf(stderr, "sluice test: cannot return to the previous netns: %s\n", strerror(errno));
    abort();
  }
  close(prev_fd);
}

}  // namespace detail

void sweep_stale_namespaces() {
  CmdResult list = run("ip netns list");
  if (list.status != 0) return;
  // unique_name() output: sl-<tag>-<pid>-<counter>. The tag itself may contain dashes.
  static const std::regex kOurs(R"(^sl-.+-([0-9]+)-[0-9]+$)");
  std::istringstream is(list.out);
  std::string line;
  while (std::getline(is, line)) {
    std::string name = line.substr(0, line.find(' '));  // "name (id: 3)"
    std::smatch m;
    if (!std::regex_match(name, m, kOurs)) continue;
    long pid = std::strtol(m[1].str().c_str(), nullptr, 10);
    if (pid <= 0 || pid == getpid()) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // owner alive
    destroy_netns(name);
  }
}

NetNs::NetNs(std::string_view tag) : name_(unique_name(tag)) {
  static std::once_flag swept;
  std::call_once(swept, sweep_stale_namespaces);

  CmdResult r = run("ip netns add " + shell_quote(name_));
  if (r.status != 0) throw std::runtime_error(describe("ip netns add " + name_, r));
  fd_ = open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    int saved = errno;
    destroy_netns(name_);
    throw std::runtime_error("open /run/netns/" + name_ + ": " + strerror(saved));
  }
  r = run("ip -n " + shell_quote(name_) + " link set lo up");
  if (r.status != 0) {
    close(fd_);
    destroy_netns(name_);
    throw std::runtime_error(describe("ip -n " + name_ + " link set lo up", r));
  }
}

NetNs::~NetNs() {
  // Close our reference first: the namespace (and its veths) is freed once nothing holds it.
  if (fd_ >= 0) close(fd_);
  destroy_netns(name_);
}

CmdResult NetNs::exec(const std::string& cmd) const {
  return run("ip netns exec " + shell_quote(name_) + " sh -c " + shell_quote(cmd));
}

void NetNs::must(const std::string& cmd) const {
  CmdResult r = exec(cmd);
  if (r.status != 0) throw std::runtime_error(describe("[netns " + name_ + "] " + cmd, r));
}

void make_veth(const NetNs& a, const std::string& if_a, const NetNs& b, const std::string& if_b) {
  std::string cmd = "ip -n " + shell_quote(a.name()) + " link add " + shell_quote(if_a) +
                    " type veth peer name " + shell_quote(if_b) + " netns " + shell_quote(b.name());
  CmdResult r = run(cmd);
  if (r.status != 0) throw std::runtime_error(describe(cmd, r));
  a.must("ip link set " + shell_quote(if_a) + " up");
  b.must("ip link set " + shell_quote(if_b) + " up");
}

unsigned ifindex(const NetNs& ns, const std::string& ifname) {
  unsigned idx = ns.in([&] { return if_nametoindex(ifname.c_str()); });
  if (idx == 0) throw_errno("if_nametoindex(" + ifname + ") in " + ns.name());
  return idx;
}

std::string mac_of(const NetNs& ns, const std::string& ifname) {
  if (ifname.size() >= IFNAMSIZ) throw std::invalid_argument("interface name too long: " + ifname);
  int fd = ns.in([] { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); });
  if (fd < 0) throw_errno("socket");
  struct ifreq ifr {};
  memcpy(ifr.ifr_name, ifname.c_str(), ifname.size());
  int rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
  int saved = errno;
  close(fd);
  if (rc != 0) {
    errno = saved;
    throw_errno("SIOCGIFHWADDR " + ifname + " in " + ns.name());
  }
  const auto* m = reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data);
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

void ensure_bpffs() {
  struct statfs st {};
  if (statfs("/sys/fs/bpf", &st) == 0 && static_cast<unsigned long>(st.f_type) == kBpfFsMagic) {
    return;
  }
  if (mkdir("/sys/fs/bpf", 0700) != 0 && errno != EEXIST) throw_errno("mkdir /sys/fs/bpf");
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0) {
    int saved = errno;
    // Another test process may have mounted it between our check and our mount.
    if (statfs("/sys/fs/bpf", &st) == 0 && static_cast<unsigned long>(st.f_type) == kBpfFsMagic) {
      return;
    }
    errno = saved;
    throw_errno("mount bpffs at /sys/fs/bpf");
  }
}

std::optional<std::string> skip_reason() {
  if (geteuid() != 0) return "needs root";
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) return "no /sys/kernel/btf/vmlinux";
  if (run("command -v ip").status != 0) return "needs iproute2 'ip'";
  try {
    ensure_bpffs();
  } catch (const std::exception& e) {
    return std::string("bpffs not mountable: ") + e.what();
  }
  return std::nullopt;
}

}  // namespace sluice::test
