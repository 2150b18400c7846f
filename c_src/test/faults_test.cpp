// The spawner on older kernels and under failing system calls.
//
// Kernels.*: each newer feature the spawner leans on is taken away as an
// older kernel lacks it (corral_deny: a seccomp filter answering ENOSYS, or
// no cgroup2 mount; corral_inject.so: no cgroup.kill file), and the test
// checks what the fallback must still give (docs/KERNELS.md has one row per
// test).
//
// Faults.*: chosen calls in the spawner fail (corral_inject.so); each must
// end in a clear answer to the caller, with no fd, process or cgroup left
// behind and the spawner serving the next request.
#include <dirent.h>
#include <ei.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cgroup.h"
#include "child.h"
#include "fd.h"
#include "frame.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#if defined(CORRAL_DENY_PATH) && defined(CORRAL_INJECT_PATH)
constexpr const char* kDeny = CORRAL_DENY_PATH;
constexpr const char* kInject = CORRAL_INJECT_PATH;
#else
constexpr const char* kDeny = nullptr;
constexpr const char* kInject = nullptr;
#endif

std::string encode(const std::string& path, const std::vector<std::string>& argv) {
  ei_x_buff x;
  ei_x_new_with_version(&x);
  ei_x_encode_map_header(&x, 3);
  ei_x_encode_atom(&x, "path");
  ei_x_encode_binary(&x, path.data(), static_cast<int>(path.size()));
  std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  for (auto [key, list] : {std::pair{"argv", &argv}, {"env", &env}}) {
    ei_x_encode_atom(&x, key);
    if (!list->empty()) ei_x_encode_list_header(&x, static_cast<long>(list->size()));
    for (const auto& s : *list) ei_x_encode_binary(&x, s.data(), static_cast<int>(s.size()));
    ei_x_encode_empty_list(&x);
  }
  std::string out(x.buff, static_cast<size_t>(x.index));
  ei_x_free(&x);
  return out;
}

std::string sh(const std::string& script) { return encode("/bin/sh", {"sh", "-c", script}); }

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (;;) {
    if (!readable(fd, 5000ms)) return s + "<timeout>";
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return s;
    s.append(buf, static_cast<size_t>(n));
  }
}

std::string read_line(int fd) {
  std::string line;
  char c;
  while (readable(fd, 5000ms) && read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit = 3000ms) {
  auto end = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Gone or a zombie: it runs no more code.
bool dead(pid_t pid) {
  if (kill(pid, 0) < 0 && errno == ESRCH) return true;
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         (stat[paren + 2] == 'Z' || stat[paren + 2] == 'X');
}

// pid's open fds and what each is (its link target), e.g. "pipe:[123]".
std::map<int, std::string> fds_of(pid_t pid) {
  std::map<int, std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[256] = {};
    ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
    out[atoi(e->d_name)] = n > 0 ? target : "";
  }
  closedir(d);
  return out;
}

std::string describe(const std::map<int, std::string>& fds) {
  std::string s;
  for (const auto& [fd, what] : fds) s += std::to_string(fd) + "=" + what + " ";
  return s;
}

// Live (non-zombie) processes whose parent is ppid.
std::vector<pid_t> live_children_of(pid_t ppid) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string stat = slurp(std::string("/proc/") + e->d_name + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 1));
    std::string state;
    long parent = 0;
    rest >> state >> parent;
    if (parent == ppid && state != "Z") out.push_back(static_cast<pid_t>(atol(e->d_name)));
  }
  closedir(d);
  return out;
}

// The cgroups directly below dir.
std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') out.emplace_back(e->d_name);
  closedir(d);
  return out;
}

// Our v2 cgroup directory if we may make cgroups there, else "" and why.
std::string writable_v2_dir(std::string& why) {
  if (geteuid() != 0) {
    why = "needs root to create cgroups";
    return "";
  }
  std::string own;
  if (int rc = spawner::cgroup::own_v2_dir(own); rc < 0) {
    why = std::string("no cgroup v2 tree: ") + strerror(-rc);
    return "";
  }
  std::string probe = own + "/corral-faults-probe." + std::to_string(getpid());
  if (mkdir(probe.c_str(), 0755) < 0) {
    why = "cannot write the cgroup v2 tree at " + own + ": " + strerror(errno);
    return "";
  }
  rmdir(probe.c_str());
  return own;
}

// A child as the driver sees it.
struct Handle {
  int ctl = -1;
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;
  std::string leaf;
  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    for (int fd : {ctl, in, out, err})
      if (fd >= 0) close(fd);
  }
};

// How the spawner under test is started.
struct SpawnerOpts {
  std::vector<std::string> deny;  // corral_deny's options
  std::vector<std::string> env;   // NAME=VALUE added to its environment
  bool inject = false;            // LD_PRELOAD corral_inject.so
};

// A spawner under corral_deny with these options.
SpawnerOpts denied(std::vector<std::string> deny) {
  SpawnerOpts o;
  o.deny = std::move(deny);
  return o;
}

// A spawner with corral_inject.so and these variables (and corral_deny's
// options, if any).
SpawnerOpts injected_with(std::vector<std::string> env, std::vector<std::string> deny = {}) {
  SpawnerOpts o;
  o.deny = std::move(deny);
  o.env = std::move(env);
  o.inject = true;
  return o;
}

class FaultFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kDeny)
      GTEST_SKIP() << "corral_deny and corral_inject.so are not built here "
                      "(sanitizer builds leave them out)";
  }

  void TearDown() override {
    stop_spawner();
    if (!log_.empty()) {
      if (std::string s = slurp(log_); !s.empty()) fputs(s.c_str(), stderr);
      unlink(log_.c_str());
    }
    if (!fault_log_.empty()) unlink(fault_log_.c_str());
  }

  void start_spawner(const SpawnerOpts& s) {
    int sp[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    char tmpl[] = "/tmp/corral_faults_stderr.XXXXXX";
    corral::unique_fd log(mkstemp(tmpl));
    ASSERT_GE(log.get(), 0);
    log_ = tmpl;
    char ftmpl[] = "/tmp/corral_faults_injected.XXXXXX";
    ASSERT_GE(corral::unique_fd(mkstemp(ftmpl)).get(), 0);
    fault_log_ = ftmpl;

    std::vector<std::string> args;
    if (!s.deny.empty()) {
      args.emplace_back(kDeny);
      args.insert(args.end(), s.deny.begin(), s.deny.end());
      args.emplace_back("--");
    }
    args.emplace_back(CORRAL_SPAWNER_PATH);
    args.emplace_back("3");
    std::vector<std::string> env;
    for (char** e = environ; *e; e++)
      if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "CORRAL_FAULT", 12) != 0)
        env.emplace_back(*e);
    if (s.inject) {
      env.emplace_back(std::string("LD_PRELOAD=") + kInject);
      env.emplace_back("CORRAL_FAULT_PROC=corral_spawner");
      env.emplace_back("CORRAL_FAULT_LOG=" + fault_log_);
    }
    env.insert(env.end(), s.env.begin(), s.env.end());
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (dup2(sp[1], 3) < 0 || dup2(log.get(), 2) < 0) _exit(126);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(sp[1]);
    pid_ = pid;
    req_ = sp[0];
  }

  // Closes the request socket and reaps the spawner (SIGKILL after 3 s).
  void stop_spawner() {
    if (req_ >= 0) close(req_);
    req_ = -1;
    if (pid_ > 0) {
      int st;
      bool exited = eventually([&] { return waitpid(pid_, &st, WNOHANG) == pid_; });
      if (!exited) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &st, 0);
      }
      EXPECT_TRUE(exited) << "spawner did not exit after request EOF";
    }
    pid_ = -1;
  }

  int send_spawn(const std::string& payload) const {
    int cp[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cp), 0);
    EXPECT_EQ(frame::send_frame(req_, frame::SpawnFrame{payload, ""}, &cp[1], 1), 0);
    close(cp[1]);
    return cp[0];
  }

  static int recv(int ctl, frame::Frame& f, std::vector<int>& fds,
                  std::chrono::milliseconds timeout = 5000ms) {
    if (!readable(ctl, timeout)) return -ETIMEDOUT;
    return frame::recv_frame(ctl, f, fds);
  }

  static std::string describe_frame(const frame::Frame& f) {
    if (auto* e = std::get_if<frame::ErrorFrame>(&f))
      return "Error: " + std::string(strerror(e->err)) + " at " + e->stage;
    return "type " + std::to_string(static_cast<unsigned>(frame::type_of(f)));
  }

  void start(const std::string& payload, Handle& h) {
    h.ctl = send_spawn(payload);
    frame::Frame f;
    std::vector<int> fds;
    ASSERT_EQ(recv(h.ctl, f, fds), 1);
    auto* got = std::get_if<frame::FdsFrame>(&f);
    ASSERT_TRUE(got) << describe_frame(f);
    h.pid = got->os_pid;
    h.leaf = got->leaf;
    size_t i = 0;
    if (got->pipes & frame::kFdStdin) h.in = fds.at(i++);
    if (got->pipes & frame::kFdStdout) h.out = fds.at(i++);
    if (got->pipes & frame::kFdStderr) h.err = fds.at(i++);
  }

  // The Exit frame's wait status, then EOF.
  int expect_exit(const Handle& h) {
    frame::Frame f;
    std::vector<int> fds;
    EXPECT_EQ(recv(h.ctl, f, fds), 1);
    auto* exit = std::get_if<frame::ExitFrame>(&f);
    EXPECT_TRUE(exit) << describe_frame(f);
    frame::Frame eof;
    EXPECT_EQ(recv(h.ctl, eof, fds, 2000ms), 0) << "ctl not closed after Exit";
    return exit ? exit->wait_status : -1;
  }

  // Sends the request and expects Error(err, stage), then EOF.
  void expect_error(const std::string& payload, int err, const std::string& stage) {
    unique_fd ctl(send_spawn(payload));
    frame::Frame f;
    std::vector<int> fds;
    ASSERT_EQ(recv(ctl.get(), f, fds), 1);
    auto* e = std::get_if<frame::ErrorFrame>(&f);
    ASSERT_TRUE(e) << describe_frame(f);
    EXPECT_EQ(e->err, err) << strerror(e->err);
    EXPECT_EQ(e->stage, stage);
    EXPECT_EQ(recv(ctl.get(), f, fds), 0) << "ctl not closed after Error";
  }

  // Runs `true` to its Exit: the spawner is then idle, with nothing of a
  // child's left open.
  void round_trip() {
    Handle h;
    ASSERT_NO_FATAL_FAILURE(start(encode("/bin/true", {"true"}), h));
    int st = expect_exit(h);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  }

  // The spawner's fds once it is idle again: equal to `before`.
  void expect_fds_back(const std::map<int, std::string>& before) const {
    std::map<int, std::string> now;
    EXPECT_TRUE(eventually([&] {
      now = fds_of(pid_);
      return now.size() == before.size();
    })) << "before: "
        << describe(before) << "\nnow: " << describe(now);
  }

  std::string spawner_log() const { return slurp(log_); }
  std::string injected() const { return slurp(fault_log_); }

  pid_t pid_ = -1;
  int req_ = -1;
  std::string log_, fault_log_;
};

using Kernels = FaultFixture;
using Faults = FaultFixture;

// --- older kernels -------------------------------------------------------------

// clone3 (5.3) and CLONE_INTO_CGROUP (5.7): the child joins its leaf itself
// through cgroup.procs, before it does anything else.
TEST_F(Kernels, WithoutClone3ChildrenStillStartInTheirLeaf) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "clone3"})));
  for (int i = 0; i < 3; i++) {
    Handle h;
    ASSERT_NO_FATAL_FAILURE(start(sh("sed -n 's/^0:://p' /proc/self/cgroup"), h));
    ASSERT_FALSE(h.leaf.empty());
    // The leaf's directory is the mount point followed by this path.
    std::string path = read_all(h.out);
    if (!path.empty() && path.back() == '\n') path.pop_back();
    ASSERT_GE(h.leaf.size(), path.size());
    EXPECT_EQ(h.leaf.substr(h.leaf.size() - path.size()), path) << "the child is not in its leaf";
    EXPECT_NE(path.find("/corral."), std::string::npos) << path;
    EXPECT_EQ(expect_exit(h), 0);
  }
  if (spawner::can_clone_into_cgroup()) {
    EXPECT_NE(spawner_log().find("clone3(CLONE_INTO_CGROUP): Function not implemented"),
              std::string::npos)
        << spawner_log();
  }
}

// pidfd_open and pidfd_send_signal (5.3, 5.1): exits are found by
// SIGCHLD and waitpid scans, signals go by pid.
TEST_F(Kernels, WithoutPidfdsExitsAreFoundAndStopsStillKill) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "pidfd_open,pidfd_send_signal"})));
  std::vector<Handle> hs(4);
  for (int i = 0; i < 4; i++)
    ASSERT_NO_FATAL_FAILURE(start(sh("read x; exit " + std::to_string(i)), hs[i]));
  Handle sleeper;
  ASSERT_NO_FATAL_FAILURE(start(encode("/bin/sleep", {"sleep", "30"}), sleeper));
  for (const auto& [fd, what] : fds_of(pid_))
    EXPECT_EQ(what.find("pidfd"), std::string::npos) << "fd " << fd << " is a pidfd";
  // Exits in the reverse order of starts, while others still run.
  for (int i = 3; i >= 0; i--) {
    ASSERT_EQ(write(hs[i].in, "\n", 1), 1);
    int st = expect_exit(hs[i]);
    ASSERT_TRUE(WIFEXITED(st)) << i;
    EXPECT_EQ(WEXITSTATUS(st), i);
  }
  ASSERT_EQ(frame::send_frame(sleeper.ctl, frame::StopFrame{}), 0);
  int st = expect_exit(sleeper);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGTERM);
  EXPECT_TRUE(dead(sleeper.pid));
}

// close_range (5.9; CLOSE_RANGE_CLOEXEC 5.11, CLOSE_RANGE_UNSHARE 5.9): the
// child takes its own fd table with unshare(CLONE_FILES) and closes the
// fds above 2 one by one. It must still see only 0, 1 and 2.
TEST_F(Kernels, WithoutCloseRangeTheChildHasOnlyStdio) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--syscalls", "close_range"})));
  // A test run by the shell itself opens nothing, so the shell's table is
  // what it got from the spawner.
  Handle keep;  // another child, so the spawner holds more fds meanwhile
  ASSERT_NO_FATAL_FAILURE(start(encode("/bin/sleep", {"sleep", "30"}), keep));
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(
      sh("i=3; while [ $i -lt 1100 ]; do [ -e /proc/$$/fd/$i ] && echo $i; i=$((i+1)); done; :"),
      h));
  EXPECT_EQ(read_all(h.out), "") << "fds above 2 reached the program";
  EXPECT_EQ(expect_exit(h), 0);
  ASSERT_EQ(frame::send_frame(keep.ctl, frame::SignalFrame{SIGKILL}), 0);
  expect_exit(keep);
}

// cgroup.kill (5.14): a leaf is killed by SIGKILLing each pid its
// cgroup.procs lists, and below, for a few rounds.
TEST_F(Kernels, WithoutCgroupKillAnEscapeeIsStillKilled) {
  std::string why, own = writable_v2_dir(why);
  if (own.empty()) GTEST_SKIP() << why;
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT_HIDE=cgroup.kill"})));
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(sh("setsid sleep 30 & echo $!; exec sleep 30"), h));
  pid_t esc = static_cast<pid_t>(std::stol(read_line(h.out)));
  ASSERT_TRUE(eventually([&] { return getsid(esc) == esc; })) << "the escapee stayed";
  ASSERT_EQ(frame::send_frame(h.ctl, frame::SignalFrame{SIGKILL}), 0);
  int st = expect_exit(h);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_TRUE(dead(esc)) << "the escapee " << esc << " outlived Exit";
  EXPECT_NE(injected().find("open cgroup.kill"), std::string::npos)
      << "cgroup.kill was never asked for: " << injected();
  kill(esc, SIGKILL);
}

// No cgroup v2 (before 4.5, or not mounted where we run): process groups
// and PDEATHSIG only. What that gives up: a descendant that leaves the
// process group (setsid) survives its child's end.
TEST_F(Kernels, WithoutCgroupV2ProcessGroupsAndPdeathsigStillHold) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace";
  ASSERT_NO_FATAL_FAILURE(start_spawner(denied({"--no-cgroup"})));
  // A background job in the group is killed with the leader.
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(sh("sleep 30 & echo $!; exec sleep 30"), h));
  EXPECT_EQ(h.leaf, "") << "a leaf without cgroup v2";
  pid_t job = static_cast<pid_t>(std::stol(read_line(h.out)));
  ASSERT_EQ(frame::send_frame(h.ctl, frame::StopFrame{}), 0);
  expect_exit(h);
  EXPECT_TRUE(dead(job)) << "the background job " << job << " outlived Exit";
  EXPECT_NE(spawner_log().find("no cgroup containment"), std::string::npos) << spawner_log();

  // Given up: the escapee lives on.
  Handle e;
  ASSERT_NO_FATAL_FAILURE(start(sh("setsid sleep 30 & echo $!; exec sleep 30"), e));
  pid_t esc = static_cast<pid_t>(std::stol(read_line(e.out)));
  ASSERT_TRUE(eventually([&] { return getsid(esc) == esc; }));
  ASSERT_EQ(frame::send_frame(e.ctl, frame::SignalFrame{SIGKILL}), 0);
  expect_exit(e);
  EXPECT_FALSE(dead(esc)) << "without cgroups nothing should reach an escapee";
  kill(esc, SIGKILL);

  // The spawner's death takes the children with it (PDEATHSIG).
  Handle last;
  ASSERT_NO_FATAL_FAILURE(start(encode("/bin/sleep", {"sleep", "30"}), last));
  kill(pid_, SIGKILL);
  EXPECT_TRUE(eventually([&] { return dead(last.pid); })) << "the child outlived the spawner";
}

// --- failing calls ---------------------------------------------------------------

// Each spawn of a default request makes 4 pipes (stdin, stdout, stderr,
// exec status): the 8th pipe2 is the second spawn's status pipe, made after
// its 3 stdio pipes.
TEST_F(Faults, PipeEmfileIsAnErrorAndLeaksNothing) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=pipe2:EMFILE:7:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());
  auto before = fds_of(pid_);
  expect_error(encode("/bin/true", {"true"}), EMFILE, "pipe");
  EXPECT_EQ(injected(), "pipe2 EMFILE\n");
  expect_fds_back(before);
  ASSERT_NO_FATAL_FAILURE(round_trip());
  expect_fds_back(before);
  EXPECT_TRUE(live_children_of(pid_).empty());
}

// clone failing with ENOMEM or EAGAIN (memory, or RLIMIT_NPROC). clone3 is
// denied so that every child goes through clone() (where clone3 works, the
// same error reaches clone() after clone3 into the leaf failed).
TEST_F(Faults, CloneFailuresAreErrorsAndLeakNothing) {
  for (const char* e : {"ENOMEM", "EAGAIN"}) {
    SCOPED_TRACE(e);
    ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with(
        {std::string("CORRAL_FAULT=clone:") + e + ":1:1"}, {"--syscalls", "clone3"})));
    ASSERT_NO_FATAL_FAILURE(round_trip());
    auto before = fds_of(pid_);
    std::string why, own = writable_v2_dir(why);
    std::string base = own.empty() ? "" : own + "/corral." + std::to_string(pid_);
    size_t leaves = base.empty() ? 0 : subdirs(base).size();
    expect_error(encode("/bin/true", {"true"}), strcmp(e, "ENOMEM") == 0 ? ENOMEM : EAGAIN, "fork");
    EXPECT_EQ(injected(), std::string("clone ") + e + "\n");
    expect_fds_back(before);
    if (!base.empty()) {
      // The failed child's leaf is removed (a pooled one may go with it).
      EXPECT_LE(subdirs(base).size(), leaves);
      EXPECT_EQ(spawner::cgroup::populated(base), 0) << base;
    }
    ASSERT_NO_FATAL_FAILURE(round_trip());
    expect_fds_back(before);
    EXPECT_TRUE(live_children_of(pid_).empty());
    stop_spawner();
    TearDown();
    log_.clear();
    fault_log_.clear();
  }
}

// The control socket is full (EAGAIN) when Fds is sent: the caller sees
// its control socket end without an answer, which the driver reports as
// {spawner_dropped, spawn}; the child is stopped and reaped.
TEST_F(Faults, FdsOnAFullSocketEndsTheRequestAndTheChild) {
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=sendmsg:EAGAIN:2:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());  // Fds, Exit: 2 sends
  auto before = fds_of(pid_);
  unique_fd ctl(send_spawn(encode("/bin/sleep", {"sleep", "30"})));
  frame::Frame f;
  std::vector<int> fds;
  EXPECT_EQ(recv(ctl.get(), f, fds), 0) << describe_frame(f);
  EXPECT_EQ(injected(), "sendmsg EAGAIN\n");
  EXPECT_TRUE(eventually([&] { return live_children_of(pid_).empty(); }, 8000ms))
      << "the child whose Fds was lost still runs";
  expect_fds_back(before);
  EXPECT_NE(spawner_log().find("cannot send Fds"), std::string::npos) << spawner_log();
  ASSERT_NO_FATAL_FAILURE(round_trip());
}

// The exec-status pipe cannot be watched (epoll_ctl fails): the spawner
// waits for that child's exec instead, and serves on.
TEST_F(Faults, UnwatchableExecStatusIsWaitedFor) {
  // Startup: request socket, signalfd; each spawn: status pipe, control
  // socket, pidfd. The 6th is the second spawn's status pipe.
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=epoll_ctl:ENOMEM:5:1"})));
  ASSERT_NO_FATAL_FAILURE(round_trip());
  auto before = fds_of(pid_);
  Handle h;
  ASSERT_NO_FATAL_FAILURE(start(encode("/bin/echo", {"echo", "waited"}), h));
  EXPECT_EQ(read_all(h.out), "waited\n");
  EXPECT_EQ(expect_exit(h), 0);
  EXPECT_EQ(injected(), "epoll_ctl ENOMEM\n");
  EXPECT_NE(spawner_log().find("cannot watch the exec status"), std::string::npos) << spawner_log();
  expect_fds_back(before);
}

// The spawner dies while it reads a request: the caller's control socket
// ends without an answer (the driver then finds the request socket at EOF:
// {spawner_died, spawn}), and a running child dies with the spawner.
TEST_F(Faults, SpawnerDyingMidRequestEndsTheRequestAndItsChildren) {
  // recvmsg: 1 for the first request, 1 that finds no second (EAGAIN).
  ASSERT_NO_FATAL_FAILURE(start_spawner(injected_with({"CORRAL_FAULT=recvmsg:die:2:1"})));
  Handle running;
  ASSERT_NO_FATAL_FAILURE(start(encode("/bin/sleep", {"sleep", "30"}), running));
  unique_fd ctl(send_spawn(encode("/bin/true", {"true"})));
  frame::Frame f;
  std::vector<int> fds;
  EXPECT_EQ(recv(ctl.get(), f, fds), 0) << describe_frame(f);
  int st = 0;
  ASSERT_EQ(waitpid(pid_, &st, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << st;
  EXPECT_EQ(injected(), "recvmsg die\n");
  EXPECT_TRUE(eventually([&] { return dead(running.pid); })) << "the child outlived the spawner";
  EXPECT_EQ(recv(running.ctl, f, fds), 0) << "the running child's ctl did not end";
}

}  // namespace
}  // namespace corral
