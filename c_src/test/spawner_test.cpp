// End-to-end tests of the corral_spawner binary over its socket protocol.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cgroup.h"
#include "fd.h"
#include "frame.h"
#include "spawn_support.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using namespace harness;
using Clock = std::chrono::steady_clock;

// A leaf after Exit: removed, or kept empty for reuse.
bool gone_or_empty(const std::string& leaf) {
  if (!exists(leaf)) return true;
  std::ifstream f(leaf + "/cgroup.procs");
  std::string line;
  return !std::getline(f, line);
}

// A shell whose background job calls setsid: it leaves the process group
// and the session. setsid(1) does not fork, since a background job of a
// non-interactive shell is not a group leader, so $! is the escapee's pid.
std::string escape_script(const std::string& then) { return "setsid sleep 30 & echo $!; " + then; }

class SpawnerTest : public SpawnerFixture {
 protected:
  void SetUp() override { start_spawner(); }

  // Sends n Spawn requests for `sh -c "exit status(i)"` before reading any
  // answer, then expects each to get its Fds and then its own exit status.
  template <typename F>
  void expect_pipelined_exits(int n, F status) {
    std::vector<Handle> hs(n);
    for (int i = 0; i < n; i++)
      hs[i].ctl =
          send_spawn(encode({"/bin/sh", {"sh", "-c", "exit " + std::to_string(status(i))}}));
    for (int i = 0; i < n; i++) {
      frame::Frame f;
      std::vector<int> fds;
      ASSERT_EQ(recv(hs[i].ctl, f, fds), 1) << i;
      ASSERT_TRUE(std::holds_alternative<frame::FdsFrame>(f)) << i << ": " << describe(f);
      for (int fd : fds) close(fd);
      int st = expect_exit(hs[i]);
      ASSERT_TRUE(WIFEXITED(st)) << i;
      EXPECT_EQ(WEXITSTATUS(st), status(i));
    }
  }

  // Starts a child whose background job leaves its session (escape_script)
  // and waits until it has; esc is the escapee's pid.
  void start_escaping(const std::string& then, Handle& h, pid_t& esc) {
    start(sh(escape_script(then)), h);
    esc = read_pid_line(h.out);
    ASSERT_GT(esc, 0);
    ASSERT_TRUE(eventually([&] { return getsid(esc) == esc; }))
        << "the escapee did not leave the session";
  }
};

TEST_F(SpawnerTest, EchoHello) {
  Handle h;
  start({"/bin/echo", {"echo", "hello"}}, h);
  EXPECT_GT(h.pid, 0);
  EXPECT_GE(h.in, 0);
  EXPECT_GE(h.out, 0);
  EXPECT_GE(h.err, 0);
  EXPECT_EQ(read_all(h.out), "hello\n");
  EXPECT_EQ(read_all(h.err), "");
  int st = expect_exit(h);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_TRUE(gone(h.pid));
}

TEST_F(SpawnerTest, StdinRoundTripAndMergedStderr) {
  Handle h;
  Request r = sh("cat; echo err >&2");
  r.stderr_mode = "stdout";
  start(r, h);
  EXPECT_LT(h.err, 0);
  ASSERT_EQ(write(h.in, "abc\n", 4), 4);
  close(h.in);
  h.in = -1;
  EXPECT_EQ(read_all(h.out), "abc\nerr\n");
  EXPECT_EQ(expect_exit(h), 0);
}

TEST_F(SpawnerTest, ExitStatus3) {
  Handle h;
  start(sh("exit 3"), h);
  int st = expect_exit(h);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 3);
}

TEST_F(SpawnerTest, SignalFrameKills) {
  Handle h;
  start({"/bin/sleep", {"sleep", "30"}}, h);
  send_ctl(h, frame::SignalFrame{999});  // invalid: ignored
  send_ctl(h, frame::SignalFrame{SIGKILL});
  int st = expect_exit(h);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
}

TEST_F(SpawnerTest, ExecFailureIsAnError) {
  int ctl = send_spawn(encode({"/nonexistent/prog", {"prog"}}));
  frame::Frame f;
  std::vector<int> fds;
  ASSERT_EQ(recv(ctl, f, fds), 1);
  auto* err = std::get_if<frame::ErrorFrame>(&f);
  ASSERT_TRUE(err) << describe(f);
  EXPECT_EQ(err->err, ENOENT);
  EXPECT_EQ(err->stage, "exec");
  EXPECT_EQ(recv(ctl, f, fds), 0);
  close(ctl);
}

TEST_F(SpawnerTest, MalformedPayloadIsDecodeErrorAndSpawnerSurvives) {
  for (const std::string& payload :
       {std::string("garbage"), std::string(), encode({"/bin/echo", {}})}) {
    int ctl = send_spawn(payload);
    frame::Frame f;
    std::vector<int> fds;
    ASSERT_EQ(recv(ctl, f, fds), 1);
    auto* err = std::get_if<frame::ErrorFrame>(&f);
    ASSERT_TRUE(err) << describe(f);
    EXPECT_EQ(err->err, EINVAL);
    EXPECT_EQ(err->stage, "decode");
    EXPECT_EQ(recv(ctl, f, fds), 0);
    close(ctl);
  }
  Handle h;
  start({"/bin/echo", {"echo", "still here"}}, h);
  EXPECT_EQ(read_all(h.out), "still here\n");
  EXPECT_EQ(expect_exit(h), 0);
}

TEST_F(SpawnerTest, RepeatedBadRequestsAreLoggedOnce) {
  for (int i = 0; i < 3; i++) {
    unique_fd ctl(send_spawn("not a term"));
    frame::Frame f;
    std::vector<int> fds;
    ASSERT_EQ(recv(ctl.get(), f, fds), 1);
    auto* err = std::get_if<frame::ErrorFrame>(&f);
    ASSERT_TRUE(err) << describe(f);
    EXPECT_EQ(err->stage, "decode");
  }
  // Logged before each Error was sent: all there by now.
  std::istringstream log(spawner_log());
  int lines = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find("bad spawn request") == std::string::npos) continue;
    lines++;
    EXPECT_NE(line.find("logged once"), std::string::npos) << line;
  }
  EXPECT_EQ(lines, 1) << "one line for the operator, not one per request";
}

TEST_F(SpawnerTest, SpawnWithoutFdIsDropped) {
  int ctl = send_spawn(encode({"/bin/echo", {"echo", "x"}}), /*attach_ctl=*/false);
  close(ctl);
  Handle h;
  start({"/bin/echo", {"echo", "next"}}, h);
  EXPECT_EQ(read_all(h.out), "next\n");
  EXPECT_EQ(expect_exit(h), 0);
  EXPECT_TRUE(spawner_alive());
}

TEST_F(SpawnerTest, StopEscalatesToSigkillAfterKillTimeout) {
  Handle h;
  Request r = sh("trap '' TERM; echo ready; sleep 30");
  r.kill_timeout = 200;
  start(r, h);
  char buf[6];
  ASSERT_TRUE(readable(h.out, 5000ms));
  ASSERT_EQ(read(h.out, buf, 6), 6);  // the trap is set
  auto t0 = Clock::now();
  send_ctl(h, frame::StopFrame{});
  int st = expect_exit(h);
  auto took = Clock::now() - t0;
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2000ms);
}

TEST_F(SpawnerTest, StopWithDefaultSignalTerminates) {
  Handle h;
  start({"/bin/sleep", {"sleep", "30"}}, h);
  send_ctl(h, frame::StopFrame{});
  int st = expect_exit(h, 2000ms);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
}

TEST_F(SpawnerTest, ClosingCtlKillsTheChild) {
  Handle h;
  start({"/bin/sleep", {"sleep", "30"}}, h);
  ASSERT_FALSE(gone(h.pid));
  close(h.ctl);
  h.ctl = -1;
  EXPECT_TRUE(eventually([&] { return gone(h.pid); }));
  EXPECT_EQ(read_all(h.out), "");  // EOF: nothing holds stdout any more
}

TEST_F(SpawnerTest, OwnerGoneDuringTheSpawnIsSilentAndTheChildIsStillReaped) {
  // A first round trip: startup, and whatever it logs, is over.
  Handle first;
  start({"/bin/true", {"true"}}, first);
  expect_exit(first);
  size_t logged = spawner_log().size();
  // Owners killed during their spawn: the control socket's peer is closed
  // before the spawner sends Fds (or, for a failed exec, Error).
  for (int i = 0; i < 8; i++) {
    Request r = i % 2 ? Request{"/nonexistent/prog", {"prog"}} : sh("trap '' TERM; exec sleep 30");
    r.kill_timeout = 200;
    close(send_spawn(encode(r)));
  }
  // Requests are read in order: once this one is answered, the eight above
  // have all been cloned.
  Handle h;
  start({"/bin/echo", {"echo", "still serving"}}, h);
  EXPECT_EQ(read_all(h.out), "still serving\n");
  expect_exit(h);
  // Each child is stopped (SIGTERM is ignored, so SIGKILL follows) and reaped.
  EXPECT_TRUE(eventually([&] { return children_of(pid_).empty(); }, 5000ms))
      << children_of(pid_).size() << " children of the spawner left";
  std::string why, own = writable_v2_dir(why);
  if (!own.empty()) {
    std::string b = base(own);
    if (DIR* d = opendir(b.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] != 'c') continue;
        EXPECT_TRUE(gone_or_empty(b + "/" + e->d_name)) << e->d_name;
      }
      closedir(d);
    }
  }
  EXPECT_EQ(spawner_log().substr(logged), "") << "an owner going away is not for the VM's stderr";
}

TEST_F(SpawnerTest, ExitWaitsForTheWholeGroup) {
  Handle h;
  start(sh("sleep 30 & echo $!; exit 0"), h);
  // Read the background pid line (not to EOF: the sleep holds stdout).
  pid_t bg = read_pid_line(h.out);
  ASSERT_GT(bg, 0);
  int st = expect_exit(h);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_TRUE(gone(bg)) << "Exit sent while the background sleep lives";
  ASSERT_TRUE(readable(h.out, 0ms)) << "stdout not at EOF when Exit arrived";
  char c;
  EXPECT_EQ(read(h.out, &c, 1), 0);
}

TEST_F(SpawnerTest, ManyChildrenEachGetTheirOwnExit) {
  constexpr int kN = 40;
  std::vector<Handle> hs(kN);
  for (int i = 0; i < kN; i++) start(sh("exit " + std::to_string(i)), hs[i]);
  for (int i = 0; i < kN; i++) {
    int st = expect_exit(hs[i]);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), i);
  }
}

TEST_F(SpawnerTest, PipelinedRequestsEachGetFdsThenTheirOwnExit) {
  // All requests sent before any answer is read: many children are between
  // clone and exec at once, and some exit (and are reaped) before the
  // spawner has read their exec status. Each must still get its Fds first,
  // then its own exit status.
  expect_pipelined_exits(64, [](int i) { return i % 50; });
  EXPECT_TRUE(spawner_alive());
}

TEST_F(SpawnerTest, RequestsWaitWhileTooManyChildrenAreBeforeExec) {
  // With at most one child between clone and exec, the spawner stops reading
  // requests after each spawn and resumes once the exec status is in: every
  // pipelined request must still be served, in order.
  stop_spawner();
  setenv("CORRAL_SPAWNER_MAX_PENDING", "1", 1);
  start_spawner();
  unsetenv("CORRAL_SPAWNER_MAX_PENDING");
  ASSERT_NO_FATAL_FAILURE(expect_pipelined_exits(40, [](int i) { return i; }));
  // Paused or not, the end of the request socket still stops the spawner.
  Handle last;
  start(sh("sleep 30"), last);
  pid_t child = last.pid;
  stop_spawner();
  EXPECT_TRUE(dead(child));
}

TEST_F(SpawnerTest, RunningChildrenCostFdsAboveTheSharedRange) {
  // Each running child costs the spawner a control socket (and a pidfd);
  // those live at 1024 and above, so that children being started, which
  // take only the fds below 1024, do not copy them. With a low fd limit
  // there is no such range and nothing moves.
  constexpr int kN = 40;
  std::vector<Handle> hs(kN);
  for (int i = 0; i < kN; i++) start(sh("sleep 30"), hs[i]);
  std::string limits = slurp("/proc/" + std::to_string(pid_) + "/limits");
  size_t at = limits.find("Max open files");
  ASSERT_NE(at, std::string::npos);
  long soft = strtol(limits.c_str() + at + strlen("Max open files"), nullptr, 10);
  int low = 0, high = 0;
  auto count = [&] {
    low = high = 0;
    for (const auto& [fd, what] : open_fds(pid_)) (fd >= 1024 ? high : low)++;
    return high >= kN;
  };
  // The count can trail the last start for a moment (seen once without
  // pidfds, in make kernels: 39 of 40), so wait for it.
  if (soft >= 4096) (void)eventually(count);
  (void)count();
  ASSERT_GT(low + high, 0) << "cannot list the spawner's fds";
  if (soft < 4096) {
    EXPECT_EQ(high, 0) << "fd limit " << soft;
  } else {
    EXPECT_GE(high, kN) << "control sockets and pidfds should sit at 1024 and above";
    EXPECT_LT(low, 32) << "the low range holds only the spawner's fixed fds";
  }
  for (auto& h : hs) {
    send_ctl(h, frame::SignalFrame{SIGKILL});
    expect_exit(h);
  }
}

TEST_F(SpawnerTest, ExitsAreFoundWhenPidfdsGiveWay) {
  // A hard fd limit of 420 leaves the spawner room for about 36 pidfds
  // (420 - 384 reserved): of 60 running children the first get one, later
  // ones take it from others or go without, and their exits are found by
  // scanning. Every child must still get its own Exit.
  stop_spawner();
  start_spawner({.nofile_hard = 420});
  constexpr int kN = 60;
  std::vector<Handle> hs(kN);
  auto count_pidfds = [&] {
    int n = 0;
    for (const auto& [fd, what] : open_fds(pid_)) n += what.find("pidfd") != std::string::npos;
    return n;
  };
  // Each child waits for a line on stdin, so that none exits (and frees its
  // fds) before all of them run, however slowly they start.
  auto cmd = [](int i) { return sh("read x; exit " + std::to_string(i)); };
  // (A child's pidfd is opened just after its Fds frame is sent.)
  for (int i = 0; i < 10; i++) start(cmd(i), hs[i]);
  EXPECT_TRUE(eventually([&] { return count_pidfds() == 10; }, 200ms))
      << count_pidfds() << " pidfds; 10 children with room for 36 should each hold one";
  for (int i = 10; i < kN; i++) start(cmd(i), hs[i]);
  EXPECT_TRUE(eventually([&] { return count_pidfds() == 0; }, 200ms))
      << count_pidfds() << " pidfds; 60 control sockets leave no room, pidfds should give way";
  for (auto& h : hs) ASSERT_EQ(write(h.in, "\n", 1), 1);
  for (int i = 0; i < kN; i++) {
    int st = expect_exit(hs[i]);
    ASSERT_TRUE(WIFEXITED(st)) << i;
    EXPECT_EQ(WEXITSTATUS(st), i);
  }
  // And once they are gone, new children get pidfds again and still exit.
  Handle again;
  start(sh("exit 7"), again);
  int st = expect_exit(again);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
}

TEST_F(SpawnerTest, RequestEofKillsChildrenAndExits) {
  // Become a subreaper so the orphaned child comes to us and we see its status.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  Handle h;
  Request r = sh("trap '' TERM; sleep 30");
  start(r, h);
  close(req_);
  req_ = -1;
  int st = 0;
  ASSERT_TRUE(spawner_exits_within(2000ms, st));
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  int cst = 0;
  EXPECT_TRUE(eventually([&] { return waitpid(h.pid, &cst, WNOHANG) == h.pid; }, 2000ms));
  EXPECT_TRUE(WIFSIGNALED(cst) && WTERMSIG(cst) == SIGKILL);
  // The background sleep was in the group too; reap whatever else came to us.
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
}

// --- cgroups ------------------------------------------------------------------

// The leaf named by the Fds payload holds the child; the escapee is in it too.
void expect_in_leaf(const std::string& own, const std::string& base, const Handle& h, pid_t esc) {
  ASSERT_FALSE(h.leaf.empty()) << "no leaf cgroup in the Fds payload";
  EXPECT_EQ(h.leaf.rfind(base + "/", 0), 0u) << h.leaf << " is not under " << base;
  EXPECT_TRUE(exists(h.leaf + "/cgroup.procs"));
  std::string procs = slurp(h.leaf + "/cgroup.procs");
  EXPECT_NE(procs.find(std::to_string(h.pid) + "\n"), std::string::npos) << procs;
  EXPECT_NE(procs.find(std::to_string(esc) + "\n"), std::string::npos) << procs;
  EXPECT_TRUE(exists(own));
}

TEST_F(SpawnerTest, StopKillsAnEscapeeBeforeExit) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  Handle h;
  pid_t esc = -1;
  ASSERT_NO_FATAL_FAILURE(start_escaping("exec sleep 30", h, esc));
  ASSERT_NE(getpgid(esc), h.pid);
  expect_in_leaf(own, base(own), h, esc);
  send_ctl(h, frame::StopFrame{});
  int st = expect_exit(h);
  EXPECT_TRUE(dead(esc)) << "Exit sent while the escapee " << esc << " lives";
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_FALSE(exists(h.leaf)) << "leaf " << h.leaf << " left after Exit";
  kill(esc, SIGKILL);
}

TEST_F(SpawnerTest, LeaderExitKillsAnEscapeeBeforeExit) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  Handle h;
  pid_t esc = -1;
  // Only once it has left the group is it an escapee: before that the
  // group's SIGKILL takes it, the leaf is clean, and it is kept for reuse.
  ASSERT_NO_FATAL_FAILURE(start_escaping("read x || exit 0", h, esc));
  expect_in_leaf(own, base(own), h, esc);
  close(h.in);  // the leader exits 0; the escapee would sleep on
  h.in = -1;
  int st = expect_exit(h);
  EXPECT_TRUE(dead(esc)) << "Exit sent while the escapee " << esc << " lives";
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_FALSE(exists(h.leaf));
  ASSERT_TRUE(readable(h.out, 0ms)) << "stdout not at EOF when Exit arrived";
  kill(esc, SIGKILL);
}

TEST_F(SpawnerTest, EachChildHasItsOwnLeaf) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  Handle a, b;
  start({"/bin/sleep", {"sleep", "30"}}, a);
  start({"/bin/sleep", {"sleep", "30"}}, b);
  EXPECT_NE(a.leaf, b.leaf);
  EXPECT_TRUE(exists(a.leaf));
  EXPECT_TRUE(exists(b.leaf));
  send_ctl(a, frame::SignalFrame{SIGKILL});
  expect_exit(a);
  EXPECT_TRUE(gone_or_empty(a.leaf));
  EXPECT_TRUE(exists(b.leaf)) << "the other child's leaf went too";
  EXPECT_FALSE(gone_or_empty(b.leaf)) << "the other child left its leaf";
  send_ctl(b, frame::SignalFrame{SIGKILL});
  expect_exit(b);
  EXPECT_TRUE(gone_or_empty(b.leaf));
}

// A child that made cgroups of its own in its leaf (as a nested VM's
// spawner does) leaves a leaf that is not clean: it is removed with them,
// never handed to the next child.
TEST_F(SpawnerTest, LeafWithTheChildsOwnSubgroupsIsRemovedNotReused) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  Handle a;
  start({"/bin/sh",
         {"sh", "-c",
          "m=$(awk '$3 == \"cgroup2\" {print $2; exit}' /proc/self/mounts); "
          "p=$(sed -n 's/^0:://p' /proc/self/cgroup); mkdir \"$m$p/nested\""}},
        a);
  int st = expect_exit(a);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the child could not mkdir";
  EXPECT_FALSE(exists(a.leaf + "/nested")) << "the child's subgroup was left behind";
  EXPECT_FALSE(exists(a.leaf)) << "a leaf with subgroups was kept for reuse";
  Handle b;
  start({"/bin/true", {"true"}}, b);
  EXPECT_NE(b.leaf, a.leaf);
  expect_exit(b);
}

// A leaf whose tree was gone when its leader was reaped was never
// cgroup.kill'ed, so it can serve the next child; a killed one never does
// (a child cloned into it would die at birth).
TEST_F(SpawnerTest, CleanLeavesAreReusedKilledOnesAreNot) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  Handle a;
  start({"/bin/true", {"true"}}, a);
  int st = expect_exit(a);
  ASSERT_TRUE(WIFEXITED(st));
  ASSERT_TRUE(exists(a.leaf)) << "a clean leaf was not kept";
  Handle b;
  pid_t esc = -1;
  ASSERT_NO_FATAL_FAILURE(start_escaping("exec sleep 30", b, esc));
  EXPECT_EQ(b.leaf, a.leaf) << "the clean leaf was not reused";
  send_ctl(b, frame::SignalFrame{SIGKILL});  // the group dies, the escapee lives on
  expect_exit(b);
  EXPECT_TRUE(dead(esc));
  EXPECT_FALSE(exists(b.leaf)) << "a killed leaf was kept";
  Handle c;
  start({"/bin/true", {"true"}}, c);
  EXPECT_NE(c.leaf, b.leaf);
  expect_exit(c);
}

TEST_F(SpawnerTest, RequestEofKillsEscapeesAndRemovesTheBase) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  std::string b = base(own);
  Handle h;
  pid_t esc = -1;
  ASSERT_NO_FATAL_FAILURE(start_escaping("exec sleep 30", h, esc));
  expect_in_leaf(own, b, h, esc);
  close(req_);
  req_ = -1;
  int st = 0;
  ASSERT_TRUE(spawner_exits_within(3000ms, st));
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_TRUE(dead(esc)) << "the escapee " << esc << " outlived the spawner";
  EXPECT_FALSE(exists(b)) << "base " << b << " left behind";
  kill(esc, SIGKILL);
}

TEST_F(SpawnerTest, StaleBaseOfADeadSpawnerIsRemovedAtStartup) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  pid_t dead_pid = spawner::reaped_pid();
  ASSERT_GT(dead_pid, 0);
  // What a SIGKILLed spawner leaves: its base, a leaf, an escapee in it.
  // A spawner starting meanwhile (tests run in parallel) may remove the base
  // before the escapee is in it; then build it again.
  std::string stale = own + "/corral." + std::to_string(dead_pid);
  spawner::SpawnResult r;
  for (int attempt = 0; attempt < 20 && !r.ok; attempt++) {
    if (mkdir(stale.c_str(), 0755) < 0 && errno != EEXIST) FAIL() << strerror(errno);
    if (mkdir((stale + "/c3").c_str(), 0755) < 0 && errno != EEXIST) continue;
    int procs = open((stale + "/c3/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (procs < 0) continue;
    spawner::SpawnSpec s;
    s.path = "/bin/sleep";
    s.argv = {"sleep", "30"};
    spawner::ChildContext ctx;
    ctx.cgroup_procs = procs;
    r = spawner::spawn_child(s, ctx);
    close(procs);
  }
  ASSERT_TRUE(r.ok) << r.stage;

  stop_spawner();
  start_spawner();
  Handle h;  // a reply proves that startup is over
  start({"/bin/echo", {"echo", "hi"}}, h);
  EXPECT_EQ(read_all(h.out), "hi\n");
  expect_exit(h);
  EXPECT_FALSE(exists(stale)) << "stale base " << stale << " is still there";
  int st = 0;
  ASSERT_TRUE(reaped_in_time(r.child.pid, st)) << "the process in the stale base survived";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

// --- limits ------------------------------------------------------------------

TEST_F(SpawnerTest, ChildGetsTheNofileLimitTheSpawnerStartedWith) {
  rlimit ours{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max != RLIM_INFINITY && ours.rlim_max <= 512)
    GTEST_SKIP() << "hard RLIMIT_NOFILE " << ours.rlim_max << " leaves no room to raise";
  stop_spawner();
  start_spawner({.nofile_soft = 512});
  Handle h;
  start(sh("ulimit -n"), h);
  EXPECT_EQ(read_all(h.out), "512\n");
  expect_exit(h);
  // The spawner itself runs with the hard limit.
  std::string limits = slurp("/proc/" + std::to_string(pid_) + "/limits");
  size_t at = limits.find("Max open files");
  ASSERT_NE(at, std::string::npos);
  std::istringstream line(limits.substr(at + strlen("Max open files")));
  std::string soft, hard;
  line >> soft >> hard;
  EXPECT_EQ(soft, hard) << "the spawner's soft limit was not raised";
  EXPECT_NE(soft, "512");
}

// --- owners killed at once -----------------------------------------------------

// Thousands of children: a suite of its own, so that the portable-clone runs
// (which take the SpawnerTest suite) do not pay for it twice more.
class SpawnerScaleTest : public SpawnerTest {};

// The bench's 10,000 sleeps in small: children start while others exit (so
// pids and leaves are reused), under an fd limit that turns on the shared fd
// table at clone (>= 4096) and makes pidfds give way; then every owner goes
// at once. Every child must start (EMFILE here once: control sockets and
// pidfds filled the fds above the shared range and spilled below it), and
// none may outlive its owner.
TEST_F(SpawnerScaleTest, NoChildOutlivesItsOwnerAmidChurn) {
  constexpr rlim_t kLimit = 4096;
  constexpr int kN = 3000;
  rlimit ours{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max != RLIM_INFINITY && ours.rlim_max < kLimit + kN)
    GTEST_SKIP() << "hard RLIMIT_NOFILE " << ours.rlim_max << " is below " << kLimit + kN
                 << " (the spawner's " << kLimit << " and our " << kN << " control sockets)";
  rlimit raised = ours;
  raised.rlim_cur = ours.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &raised), 0);
  stop_spawner();
  start_spawner({.nofile_hard = kLimit});
  std::vector<Handle> hs(kN);
  std::vector<pid_t> long_lived;
  // Every third child exits at once; the rest would run for a minute.
  auto request = [](int i) -> Request {
    return {"/bin/sleep", {"sleep", i % 3 == 0 ? "0" : "60"}};
  };
  constexpr int kWindow = 64;  // requests in flight, as several owners make
  for (int first = 0; first < kN; first += kWindow) {
    int end = std::min(kN, first + kWindow);
    for (int i = first; i < end; i++) hs[i].ctl = send_spawn(encode(request(i)));
    for (int i = first; i < end; i++) {
      frame::Frame f;
      std::vector<int> fds;
      ASSERT_EQ(recv(hs[i].ctl, f, fds, 30000ms), 1) << i;
      auto* got = std::get_if<frame::FdsFrame>(&f);
      ASSERT_TRUE(got) << i << ": " << describe(f);
      for (int fd : fds) close(fd);
      hs[i].pid = got->os_pid;
      if (i % 3 != 0) long_lived.push_back(got->os_pid);
    }
  }
  // Every owner goes at once.
  for (Handle& h : hs) {
    close(h.ctl);
    h.ctl = -1;
  }
  // Children of the spawner that still run code (not zombies).
  auto live_children = [&] {
    std::vector<pid_t> live;
    for (pid_t p : children_of(pid_)) {
      std::string stat = slurp("/proc/" + std::to_string(p) + "/stat");
      size_t paren = stat.rfind(')');
      if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z' &&
          stat[paren + 2] != 'X')
        live.push_back(p);
    }
    return live;
  };
  bool all_gone = eventually([&] { return live_children().empty(); }, 20000ms);
  std::vector<pid_t> left = live_children();
  std::string detail;
  for (pid_t p : left) {
    detail += "\n  " + std::to_string(p) + ": " + slurp("/proc/" + std::to_string(p) + "/stat");
    detail += "    " + slurp("/proc/" + std::to_string(p) + "/cgroup");
  }
  for (pid_t p : left) kill(p, SIGKILL);
  EXPECT_TRUE(all_gone) << left.size() << " of " << long_lived.size()
                        << " children outlived their owners:" << detail;
  EXPECT_TRUE(spawner_alive());
  setrlimit(RLIMIT_NOFILE, &ours);
}

}  // namespace
}  // namespace corral
