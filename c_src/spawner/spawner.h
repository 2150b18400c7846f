// The spawner's event loop: spawn requests, control sockets and kill
// escalation, all driven by one epoll set. Cgroup leaves come from the
// LeafPool, exits from the ExitWatcher, and each child is one ChildRecord.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "cgroup_config.h"
#include "child_record.h"
#include "exit_watch.h"
#include "fd.h"
#include "frame.h"
#include "leaf_pool.h"
#include "log.h"

namespace corral::spawner {

class Spawner : private ExitWatcher::Sink {
 public:
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

 private:
  // requests
  void on_request();
  void pause_requests(bool pause);
  void handle_spawn(frame::Frame& f, std::vector<int>& fds);
  int launch(SpawnSpec& spec, cgroup::Dir& leaf, ChildRecord& c, const char*& stage);
  // Launching -> Running, or removed when the exec failed.
  void on_launch(pid_t pid);
  void started(ChildRecord& c);
  // Sends the Fds frame with ch's pipes (closing our copies). false when
  // the owner is gone.
  bool report_start(ChildRecord& c, Child& ch);
  // A held start report goes out now (before any other frame of c).
  void release_report(ChildRecord& c);
  void release_due_reports();
  // control sockets
  void on_ctl(pid_t pid);
  void owner_gone(ChildRecord& c);
  // escalation
  void escalate(ChildRecord& c);
  void clear_deadline(ChildRecord& c);
  void fire_deadlines();
  int epoll_timeout() const;
  // exits
  void on_reaped(ChildRecord& c, int status) override;
  // Finishes c at once when its group and leaf are empty, else drains it.
  void leader_reaped(ChildRecord& c);
  void check_draining();
  // memory events: an fd of pid's watch is readable; due reads are made.
  void on_events(pid_t pid);
  void poll_events();
  void send_events(ChildRecord& c, const frame::EventsFrame& f);
  void finish(pid_t pid);
  void kill_everything();
  // A configured child's groups (spec.cgroup): its own leaves, settings
  // written. 0 or -errno (logged with the reason).
  int place(const CgroupSpec& spec, ChildRecord& c, unique_fd& dir, unique_fd& procs,
            std::vector<unique_fd>& join);

  unique_fd request_;
  unique_fd epoll_;
  // Declared before children_, so destroyed after their leaves.
  LeafPool leaves_;
  cgroup::Placer placer_;  // configured children's leaves, v1 bases
  ChildTable children_;
  ExitWatcher exits_{children_, *this};
  unique_fd devnull_;  // /dev/null, for children's null stdio
  // Our pid and our (raised) fd limit, asked once instead of per child
  // (ChildContext::self, fd_limit; an unlimited one stays 0).
  pid_t self_ = 0;
  unsigned long fd_limit_ = 0;
  Deadlines deadlines_;
  std::unordered_set<pid_t> draining_;
  std::unordered_set<pid_t> events_due_;    // children whose memory events read is scheduled
  std::unordered_set<pid_t> held_reports_;  // children whose start report is held back
  rlimit nofile_{};                         // RLIMIT_NOFILE as we started, for children
  bool nofile_known_ = false;
  uint64_t reset_signals_ = ~uint64_t{0};  // our non-default dispositions
  bool done_ = false;
  size_t max_pending_ = kMaxPending;
  // Children share our fd table until they take the fds below this one
  // (ChildContext::share_fds_below); the fds a running child costs us are
  // moved above it. 0 where the fd limit leaves no room for that.
  int share_below_ = 0;
  bool request_paused_ = false;  // max_pending_ reached: requests wait
  // Conditions that may come with every request or child.
  LogOnce bad_request_, send_failed_, watch_failed_, kill_failed_, not_empty_, cgroup_failed_;
  std::string cgroup_why_;  // why the last place() failed, for the Error frame
};

}  // namespace corral::spawner
