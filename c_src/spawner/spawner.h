// The spawner's event loop: spawn requests, control sockets, reaping and
// kill escalation, all driven by one epoll set.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cgroup.h"
#include "child.h"
#include "frame.h"

namespace corral::spawner {

class Spawner {
 public:
  // Children between clone and exec at once: each holds a stack and a few
  // fds here. Requests wait in their socket above this. The tests lower it
  // through CORRAL_SPAWNER_MAX_PENDING to drive the pause and the resume.
  static constexpr size_t kMaxPending = 64;

  // request: the request socket (SOCK_SEQPACKET) from the driver.
  explicit Spawner(unique_fd request);
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Blocks SIGCHLD, opens the signalfd and the epoll set and becomes a child
  // subreaper. Returns 0 or -errno. Also raises RLIMIT_NOFILE and sets up
  // the cgroup base; if that is not possible, it logs why and containment
  // falls back to process groups.
  int init();

  // Serves until the request socket reaches EOF, then SIGKILLs every child's
  // process group and cgroup, removes the cgroups and returns 0. Returns
  // -errno if epoll itself fails.
  int run();

  // The base cgroup that holds every child's leaf; empty when none is used.
  const std::string& cgroup_base() const { return base_.path(); }

 private:
  using Clock = std::chrono::steady_clock;
  using Deadlines = std::multimap<Clock::time_point, pid_t>;

  enum class State { Running, Stopping, Draining };

  struct Tracked {
    pid_t pid = -1;  // also the process group id
    unique_fd ctl;   // empty once the owner is gone
    // Readable once the leader exits, until it is reaped: the exit found in
    // O(1). Without one (fds are short) SIGCHLD means a scan of all.
    unique_fd pidfd;
    bool unwatched = false;  // running without a pidfd: counted in unwatched_
    int stop_signal = 15;
    int64_t kill_timeout_ms = 0;
    cgroup::Dir leaf;          // empty when cgroups are not used
    bool leaf_killed = false;  // cgroup.kill'ed: never to be reused
    State state = State::Running;
    int status = 0;  // raw wait status, once reaped
    bool has_deadline = false;
    Deadlines::iterator deadline;
    Clock::time_point drain_started;
  };

  // A child between clone and exec, until its exec-status pipe ends.
  struct Pending {
    Launch launch;
    unique_fd ctl;
    cgroup::Dir leaf;
    int stop_signal = 15;
    int64_t kill_timeout_ms = 0;
    bool reaped = false;  // it exited (and was reaped) before we heard
    int status = 0;
  };

  void on_request();
  void pause_requests(bool pause);
  void handle_spawn(frame::Frame& f, std::vector<int>& fds);
  void on_launch(pid_t pid);
  void launched(pid_t pid, Pending& p);
  int make_leaf(cgroup::Dir& leaf, bool quiet);
  int take_leaf(cgroup::Dir& leaf, unique_fd& procs, unique_fd& dir);
  void give_back_leaf(cgroup::Dir& leaf);
  void prepare_spare();
  void on_ctl(pid_t pid);
  void on_sigchld();
  void on_pidfd(pid_t pid);
  // waitpid(-1) until none is left: O(children) in the kernel per call.
  void reap_all();
  void on_reaped(pid_t pid, int status);
  // waitpid(pid, WNOHANG), O(1): true if it had exited and is now reaped.
  bool reap_one(pid_t pid);
  void watch_exit(Tracked& t);
  // Moves a long-lived fd above share_below_ (best effort).
  void move_up(unique_fd& fd) const;
  void unwatch_exit(Tracked& t);
  void check_draining();
  void fire_deadlines();
  int epoll_timeout() const;

  void escalate(Tracked& t);
  void signal_leader(Tracked& t, int sig);
  void owner_gone(Tracked& t);
  // Finishes t at once when its group and leaf are empty, else drains it.
  void leader_reaped(Tracked& t, int status);
  // 1, 0, or -errno (no leaf: 0).
  int leaf_populated(const Tracked& t) const;
  void finish(pid_t pid);
  void clear_deadline(Tracked& t);
  void kill_everything();

  unique_fd request_;
  unique_fd epoll_;
  unique_fd sigfd_;
  // Declared before children_, so destroyed after their leaves.
  cgroup::Dir base_;        // <own v2 cgroup>/corral.<pid>, or empty
  unique_fd base_fd_;       // base_ opened, for short relative path walks
  unique_fd devnull_;       // /dev/null, for children's null stdio
  uint64_t next_leaf_ = 0;  // leaves are c0, c1, ...; never reused
  // Leaves ready for the next spawns: made ahead of time, or given back by
  // a child whose tree was already gone when its leader was reaped, so that
  // the leaf was never cgroup.kill'ed. (Declared after base_, so destroyed
  // before it.)
  std::vector<cgroup::Dir> clean_leaves_;
  std::unordered_map<pid_t, std::unique_ptr<Pending>> pending_;
  std::unordered_map<pid_t, std::unique_ptr<Tracked>> children_;
  Deadlines deadlines_;
  std::unordered_set<pid_t> draining_;
  rlimit nofile_{};  // RLIMIT_NOFILE as we started, for children
  bool nofile_known_ = false;
  uint64_t reset_signals_ = ~uint64_t{0};  // our non-default dispositions
  // clone3(CLONE_INTO_CGROUP) works here; once it fails as unsupported,
  // children join their leaf through cgroup.procs.
  bool use_clone3_ = true;
  bool done_ = false;
  size_t max_pending_ = kMaxPending;
  size_t fd_limit_ = 1024;  // our RLIMIT_NOFILE soft limit, once raised
  // Children share our fd table until they take the fds below this one
  // (ChildContext::share_fds_below); the fds a running child costs us are
  // moved above it. 0 where the fd limit leaves no room for that.
  int share_below_ = 0;
  // Children holding a pidfd, and those running without one.
  std::unordered_set<pid_t> pidfd_holders_;
  size_t unwatched_ = 0;
  bool scan_pending_ = false;  // a scan for merged SIGCHLDs is due at scan_at_
  Clock::time_point scan_at_;
  bool request_paused_ = false;  // max_pending_ reached: requests wait
};

}  // namespace corral::spawner
