// `sluicectl cc`: the listing, its filters, --rules, the text and JSON outputs and --watch,
// against real pinned maps holding known entries (tests/common/cc_pin_world.h), through the views
// and through sluicectl's own main. Needs root; skips otherwise.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/core/clock.h>
#include <sluice/ctl/ctl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cc_pin_world.h"
#include "netns.h"

namespace sluice::test {
namespace {

using nlohmann::json;
using Names = std::vector<std::string>;

constexpr uint64_t kNow = 5000 * kCcSec;

struct CtlRun {
  int status = -1;  // exit code
  std::string out, err;
};

std::string drain(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) s.append(buf, n);
  close(fd);
  return s;
}

// ctl_main in a child process (its stdout and stderr captured), as `sluicectl ARGS` would run.
CtlRun run_ctl(std::vector<std::string> args) {
  args.insert(args.begin(), "sluicectl");
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) return {};
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    const int rc = ctl_main(static_cast<int>(argv.size()), argv.data());
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
  }
  close(out[1]);
  close(err[1]);
  CtlRun r;
  r.out = drain(out[0]);
  r.err = drain(err[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class CcCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = skip_reason()) GTEST_SKIP() << *why;
    world_ = std::make_unique<CcPinWorld>();
    ASSERT_TRUE(world_->ok());
    fill_cc_example(*world_, kNow);
  }

  CcView View(bool with_stats = false) {
    auto m = PinnedCcMaps::open(world_->pin_dir());
    EXPECT_TRUE(m) << m.error().to_string();
    if (!m) return {};
    auto v = read_cc_view(m->fds(), with_stats);
    EXPECT_TRUE(v) << v.error().to_string();
    return v ? std::move(*v) : CcView{};
  }

  // cc_json with the filter words, as sluicectl runs it.
  json List(const std::string& rule = "", const std::string& dst = "", const std::string& cc = "") {
    auto f = parse_cc_filter(rule, dst, cc);
    EXPECT_TRUE(f) << f.error().to_string();
    return f ? cc_json(View(), *f, kNow) : json::array();
  }

  static Names CookiesOf(const json& conns) {
    Names out;
    for (const json& c : conns) out.push_back(std::to_string(c["cookie"].get<uint64_t>()));
    return out;
  }

  std::vector<std::string> Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--pin-dir", world_->pin_dir()});
    return args;
  }

  std::unique_ptr<CcPinWorld> world_;
};

// Cookies in listing order: by rule name ("#9" < "bulk" < "web"), then remote endpoint.
const Names kAll = {"4100", "4098", "4097", "4099"};

TEST_F(CcCli, ListsEveryFieldOfEveryConnection) {
  const json conns = List();
  EXPECT_EQ(CookiesOf(conns), kAll);
  ASSERT_EQ(conns.size(), 4u);
  EXPECT_EQ(conns[2], (json{{"cookie", 0x1001},
                            {"rule", "web"},
                            {"rule_id", 0},
                            {"direction", "active"},
                            {"state", "established"},
                            {"family", "ipv4"},
                            {"local", "10.0.0.1:40000"},
                            {"remote", "198.18.1.2:443"},
                            {"cc", "cubic"},
                            {"applied", true},
                            {"failed_settings", json::array()},
                            {"cwnd", 10},
                            {"ssthresh", nullptr},
                            {"srtt_us", 1234},
                            {"rttvar_us", 567},
                            {"retransmits", 0},
                            {"mss", 1448},
                            {"bytes_acked", 1000},
                            {"age_s", 100.0},
                            {"updated_s", 0.5}}));
  const json& b = conns[1];
  EXPECT_EQ(b["rule"], "bulk");
  EXPECT_EQ(b["direction"], "passive");
  EXPECT_EQ(b["local"], "198.18.0.1:80");
  EXPECT_EQ(b["remote"], "198.18.2.7:50000");
  EXPECT_EQ(b["applied"], false);
  EXPECT_EQ(b["failed_settings"], (json{"sndbuf", "rcvbuf"}));
  EXPECT_EQ(b["ssthresh"], 20);
  EXPECT_EQ(b["retransmits"], 3);
  EXPECT_EQ(conns[3]["family"], "ipv6");
  EXPECT_EQ(conns[3]["local"], "[fd00::1]:1234");
  EXPECT_EQ(conns[3]["remote"], "[fd00:18:1::2]:443");
  EXPECT_EQ(conns[3]["state"], "close_wait");
  EXPECT_EQ(conns[0]["rule"], "#9") << "an id without a name";
  EXPECT_EQ(conns[0]["cc"], "");
}

TEST_F(CcCli, Filters) {
  EXPECT_EQ(CookiesOf(List("web")), (Names{"4097", "4099"}));
  EXPECT_EQ(CookiesOf(List("bulk")), Names{"4098"});
  EXPECT_EQ(CookiesOf(List("", "198.18.0.0/16")), (Names{"4100", "4098", "4097"}));
  EXPECT_EQ(CookiesOf(List("", "198.18.1.0/24")), (Names{"4100", "4097"}));
  EXPECT_EQ(CookiesOf(List("", "198.18.1.2")), Names{"4097"});
  EXPECT_EQ(CookiesOf(List("", "198.18.1.2/31")), (Names{"4100", "4097"})) << "198.18.1.3 too";
  EXPECT_EQ(CookiesOf(List("", "fd00:18::/32")), Names{"4099"});
  EXPECT_EQ(CookiesOf(List("", "[fd00:18:1::2]")), Names{"4099"});
  EXPECT_EQ(CookiesOf(List("", "0.0.0.0/0")), (Names{"4100", "4098", "4097"})) << "IPv4 only";
  EXPECT_EQ(CookiesOf(List("", "10.0.0.1")), Names{}) << "the remote address, not the local";
  EXPECT_EQ(CookiesOf(List("", "", "bbr")), Names{"4099"});
  EXPECT_EQ(CookiesOf(List("", "", SL_CC_OURS)), Names{"4098"});
  EXPECT_EQ(CookiesOf(List("web", "198.18.0.0/15", "cubic")), Names{"4097"}) << "AND";
  EXPECT_EQ(CookiesOf(List("web", "", "reno")), Names{});
}

// The filter words alone: tests/unit/ctl_cc_filter_test.cc. Here, --rule against the names
// the maps hold.
TEST_F(CcCli, RuleNamesComeFromTheMaps) {
  EXPECT_EQ(check_cc_rule(*parse_cc_filter("wbe", "", ""), View().rules).error().message,
            "--rule 'wbe': no rule of that name; rules: web, bulk, old");
  EXPECT_TRUE(check_cc_rule(*parse_cc_filter("old", "", ""), View().rules))
      << "a removed rule whose id keeps its name";
}

TEST_F(CcCli, TextTableAndFooter) {
  const std::string text = cc_text(List());
  std::vector<std::string> lines;
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1)
    lines.push_back(text.substr(pos, nl - pos));
  ASSERT_EQ(lines.size(), 6u) << text;
  EXPECT_EQ(lines[0],
            "Local           Remote              Dir      State        CC           Rule  Cwnd  "
            "Ssthresh  Srtt(ms)  Rttvar(ms)  Retrans   Acked    Age  Applied")
      << text;
  EXPECT_EQ(lines[3],
            "10.0.0.1:40000  198.18.1.2:443      active   established  cubic        web     10  "
            "       -     1.234       0.567        0    1000  1m40s  yes")
      << text;
  EXPECT_EQ(lines[2],
            "198.18.0.1:80   198.18.2.7:50000    passive  established  sluice_aimd  bulk    40  "
            "      20     0.350       0.100        3  123456  1m40s  no:sndbuf,rcvbuf")
      << text;
  EXPECT_NE(lines[1].find("  ?  "), std::string::npos) << "no algorithm read yet: " << lines[1];
  EXPECT_NE(lines[4].find("close_wait   bbr"), std::string::npos) << lines[4];
  EXPECT_NE(lines[4].find("12.000       3.000"), std::string::npos) << lines[4];
  EXPECT_EQ(lines[5], "4 connections: ? 1, bbr 1, cubic 1, sluice_aimd 1");
  EXPECT_EQ(cc_text(json::array()),
            "Local  Remote  Dir  State  CC  Rule  Cwnd  Ssthresh  Srtt(ms)  Rttvar(ms)  Retrans  "
            "Acked  Age  Applied\n0 connections\n");
}

TEST_F(CcCli, RulesSummary) {
  const CcView v = View(true);
  auto f = parse_cc_filter("", "", "");
  const json s = cc_summary_json(v, *f, cc_json(v, *f, kNow));
  const uint64_t k = CcPinWorld::cpu_weight();
  EXPECT_EQ(s["generation"], 3);
  EXPECT_EQ(s["active_slot"], 1);
  ASSERT_EQ(s["rules"].size(), 3u) << s.dump();
  const json& web = s["rules"][0];
  EXPECT_EQ(web, (json{{"id", 0},
                       {"name", "web"},
                       {"in_use", true},
                       {"matched", 3 * k},
                       {"applied", 2 * k},
                       {"failed", 1 * k},
                       {"failed_by",
                        {{"algorithm", 0},
                         {"initial_cwnd", 0},
                         {"sndbuf", 1 * k},
                         {"rcvbuf", 0},
                         {"cwnd_clamp", 0}}},
                       {"untracked", 1 * k},
                       {"closed", 2 * k},
                       {"live", 2}}));
  EXPECT_EQ(s["rules"][2]["name"], "old");
  EXPECT_EQ(s["rules"][2]["in_use"], false);
  EXPECT_EQ(s["connections"],
            (json{{"total", 4}, {"by_cc", {{"", 1}, {"bbr", 1}, {"cubic", 1}, {SL_CC_OURS, 1}}}}));
  EXPECT_EQ(s["algorithm_users"], (json{{SL_CC_OURS, 1}}));

  // --rule keeps one rule; the other filters apply to the live connections.
  auto web_only = parse_cc_filter("web", "", "cubic");
  const json w = cc_summary_json(v, *web_only, cc_json(v, *web_only, kNow));
  ASSERT_EQ(w["rules"].size(), 1u);
  EXPECT_EQ(w["rules"][0]["live"], 1);
  EXPECT_EQ(w["connections"]["total"], 1);

  const std::string text = cc_summary_text(s);
  EXPECT_EQ(text.rfind("policy generation 3, slot 1\nRule  Id  InUse  Matched", 0), 0u) << text;
  EXPECT_NE(text.find("bulk   3  yes"), std::string::npos) << text;
  EXPECT_NE(text.find("sndbuf " + std::to_string(k) + ", rcvbuf " + std::to_string(k)),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("old    5  no"), std::string::npos) << text;
  EXPECT_NE(
      text.find("\n4 connections: ? 1, bbr 1, cubic 1, sluice_aimd 1\nsluice_aimd users: 1\n"),
      std::string::npos)
      << text;
}

// ---- through sluicectl's main ----------------------------------------------------------------

TEST_F(CcCli, CommandPrintsJsonAndText) {
  // Ages come from the clock here: entries 100 s old as of now.
  world_ = std::make_unique<CcPinWorld>();
  ASSERT_TRUE(world_->ok());
  fill_cc_example(*world_, monotonic_ns());

  CtlRun r = run_ctl(Ctl({"cc", "-o", "json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  const json conns = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(conns.is_array()) << r.out;
  EXPECT_EQ(CookiesOf(conns), kAll);
  EXPECT_TRUE(conns[2]["cwnd"].is_number());
  EXPECT_GE(conns[2]["age_s"].get<double>(), 100.0);

  r = run_ctl(Ctl({"cc", "--rule", "web", "--dst", "198.18.0.0/16", "-o", "json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(CookiesOf(json::parse(r.out)), Names{"4097"});
  r = run_ctl(Ctl({"-o", "json", "cc", "--cc", "bbr"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(CookiesOf(json::parse(r.out)), Names{"4099"});

  r = run_ctl(Ctl({"cc"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Local  ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("1m40s  yes\n"), std::string::npos) << r.out;

  r = run_ctl(Ctl({"cc", "--rules", "-o", "json"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["rules"].size(), 3u) << r.out;
  r = run_ctl(Ctl({"cc", "--rules"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("policy generation 3", 0), 0u) << r.out;
}

TEST_F(CcCli, BadArgumentsExitTwoWithTheReason) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"cc", "--rule", "wbe"}, "--rule 'wbe': no rule of that name; rules: web, bulk, old"},
           {{"cc", "--dst", "10.0.0.1/8"}, "did you mean 10.0.0.0/8?"},
           {{"cc", "--cc", "no such"}, "--cc 'no such': expected an algorithm name"},
           {{"cc", "--watch", "0"}, "--watch '0': expected SECONDS"},
           {{"cc", "--no-such-option"}, "--no-such-option"}}) {
    CtlRun r = run_ctl(Ctl(c.args));
    EXPECT_EQ(r.status, 2) << c.args[1] << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(CcCli, NoCongestionSectionExitsOne) {
  const std::string dir = world_->pin_dir();
  world_.reset();
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  CtlRun r = run_ctl({"--pin-dir", dir, "cc"});
  rmdir(dir.c_str());
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "sluicectl: sluiced has no `congestion` section (no " + dir +
                       "/cc); add one to its config, or give the --pin-dir of an agent that has\n");
}

TEST_F(CcCli, WatchRedrawsUntilInterrupted) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    std::vector<std::string> args = {
        "sluicectl", "--pin-dir", world_->pin_dir(), "cc", "--watch", "0.1", "-o", "json"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    const int rc = ctl_main(static_cast<int>(argv.size()), argv.data());
    fflush(stdout);
    _exit(rc);
  }
  close(out[1]);
  // Frames are one JSON document per line when not on a terminal; wait for three.
  std::string got;
  char buf[4096];
  while (std::count(got.begin(), got.end(), '\n') < 3) {
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, n);
  }
  kill(pid, SIGINT);
  int st = 0;
  waitpid(pid, &st, 0);
  got += drain(out[0]);
  ASSERT_TRUE(WIFEXITED(st)) << "Ctrl-C ends the watch through its exit path, not by the signal";
  EXPECT_EQ(WEXITSTATUS(st), 0);
  size_t frames = 0;
  for (size_t pos = 0, nl; (nl = got.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    const json frame = json::parse(got.substr(pos, nl - pos), nullptr, false);
    EXPECT_TRUE(frame.is_array() && frame.size() == 4) << got.substr(pos, nl - pos);
    ++frames;
  }
  EXPECT_GE(frames, 3u) << got;
}

}  // namespace
}  // namespace sluice::test
