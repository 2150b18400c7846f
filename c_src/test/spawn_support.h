// Test support: a blocking start of one child, on top of start_child; and the
// harness of the end-to-end spawner tests (spawner_test.cpp, faults_test.cpp),
// which talk to a corral_spawner binary over its socket protocol as the
// driver does.
#pragma once

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "frame.h"
#include "request_terms.h"

namespace corral::spawner {

struct SpawnResult {
  bool ok = false;
  Child child;             // when ok
  int error = 0;           // errno, when !ok
  const char* stage = "";  // setup stage that failed, when !ok
};

// start_child, then waits for the exec-status pipe. Returns once the child
// has exec'd (ok) or failed before exec (the failed child is reaped here).
SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx = {});

// A pid that is surely dead: that of a process started (through Boost.Process)
// and reaped here. -1 if /bin/true could not be run.
pid_t reaped_pid();

}  // namespace corral::spawner

namespace corral::harness {

using namespace std::chrono_literals;

// --- processes, fds and files ---------------------------------------------------

// Polls cond every 5 ms until it holds or `limit` passes.
template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit = 3000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Polls fd for input for at most `timeout`; true if readable (or hung up).
bool readable(int fd, std::chrono::milliseconds timeout);
// Everything up to EOF, with "<timeout>" appended if 5 s pass without input.
std::string read_all(int fd);
// The first line of fd, without its newline (not read to EOF: others may
// hold the pipe).
std::string read_line(int fd);
// The pid printed on the first line of fd; -1 if none.
pid_t read_pid_line(int fd);

std::string slurp(const std::string& path);
// Runs body in a forked child and returns what it returned (the child's
// writes to a pipe, read to EOF; then the child is reaped).
std::string in_fork(const std::function<std::string()>& body);
// Runs body in a forked child that first runs before (still as root; false
// ends it with "prepare failed"), then becomes nobody with no supplementary
// groups, and returns what body returned (or why it could not run).
std::string as_nobody(const std::function<std::string()>& body,
                      const std::function<bool()>& before = {});
bool exists(const std::string& path);

// No such process (reaped, or never there).
bool gone(pid_t pid);
// Gone, or a zombie: it runs no more code. (A process killed through its
// cgroup leaves it a moment before it becomes a zombie, hence a few retries
// over 100 ms.)
bool dead(pid_t pid);
// Reaps our child pid if it ends within 3 s; otherwise SIGKILLs it, reaps
// it and returns false.
bool reaped_in_time(pid_t pid, int& st);

// pid's open fds, each with what /proc says it is (its link target, e.g.
// "pipe:[123]").
std::map<int, std::string> open_fds(pid_t pid);
// "fd=target ..." for failure messages.
std::string describe(const std::map<int, std::string>& fds);
// The pids whose parent is ppid, from /proc; zombies too unless told not to.
std::vector<pid_t> children_of(pid_t ppid, bool with_zombies = true);
// The directories directly below dir (not . and ..).
std::vector<std::string> subdirs(const std::string& dir);

// Our own v2 cgroup directory, which a spawner started here inherits, if we
// may make cgroups in it; otherwise "" and why.
std::string writable_v2_dir(std::string& why);

// --- requests ---------------------------------------------------------------------

// A spawn request and its term (request_terms.h).
using spawner::terms::encode;
using spawner::terms::Request;
// /bin/sh -c script.
Request sh(const std::string& script);

// A child as the driver sees it: its control socket and pipe ends, closed
// when it goes.
struct Handle {
  int ctl = -1;
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;
  std::string leaf;  // the Fds payload
  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
};

// --- the spawner under test --------------------------------------------------------

// How a spawner is started.
struct SpawnerOpts {
  // A program (and its options) that runs the spawner, e.g. corral_deny ...
  // --; empty for none.
  std::vector<std::string> wrapper = {};
  // NAME=VALUE added to its environment, which is ours.
  std::vector<std::string> env = {};
  // Whether our LD_PRELOAD and CORRAL_FAULT* variables reach it: make
  // kernels and make memcheck preload their shims into every spawner that
  // way; a test that sets its own leaves them out.
  bool inherit_preload = true;
  // RLIMIT_NOFILE set in the spawner before exec, as a VM might: 0 leaves
  // that limit as it is; a soft 0 with a hard limit takes the hard one.
  rlim_t nofile_soft = 0, nofile_hard = 0;
};

// A fixture that runs one corral_spawner on a request socket (its fd 3),
// its stderr in a file that TearDown copies to ours.
class SpawnerFixture : public ::testing::Test {
 protected:
  void TearDown() override;

  void start_spawner(const SpawnerOpts& opts = {});
  // Closes the request socket and reaps the spawner (SIGKILL after 3 s,
  // then a failure).
  void stop_spawner();
  // True if the spawner exits within limit; st is then its wait status.
  bool spawner_exits_within(std::chrono::milliseconds limit, int& st);
  bool spawner_alive();
  // What the spawner has written to its stderr so far.
  std::string spawner_log() const;
  // Where the spawner puts its children's leaves, below own.
  std::string base(const std::string& own) const;

  // Sends a Spawn frame with a fresh control socket; returns our end.
  int send_spawn(const std::string& payload, bool attach_ctl = true) const;
  // Receives one frame on ctl within `timeout`; returns recv_frame's result.
  static int recv(int ctl, frame::Frame& f, std::vector<int>& fds,
                  std::chrono::milliseconds timeout = 5000ms);
  // What an unexpected frame says, for failure messages.
  static std::string describe(const frame::Frame& f);

  // Spawns r and expects Fds; fills h.
  void start(const Request& r, Handle& h);
  // Waits for the Exit frame and then EOF on ctl; returns the wait status.
  int expect_exit(const Handle& h, std::chrono::milliseconds timeout = 5000ms);
  // Sends the request and expects Error(err, stage), then EOF.
  void expect_error(const std::string& payload, int err, const std::string& stage);
  void send_ctl(const Handle& h, const frame::Frame& f);

  pid_t pid_ = -1;  // the spawner's
  int req_ = -1;

 private:
  // Copies the spawner's log to our stderr and removes it.
  void flush_log();

  std::string log_;
  bool reaped_ = false;  // pid_ has been waited for; status_ is its status
  int status_ = 0;
};

}  // namespace corral::harness
