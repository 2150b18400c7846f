// Finding and reaping exited children: a pidfd per child while the fd table
// has room for it (a budget that gives way to control sockets), SIGCHLD
// through a signalfd, and scans of all children for those without a pidfd
// and for orphans that came to us as subreaper.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <unordered_set>

#include "child_record.h"
#include "fd.h"

namespace corral::spawner {

class ExitWatcher {
 public:
  // Told of every reaped pid that belongs to the table (orphans are reaped
  // silently).
  class Sink {
   public:
    virtual void on_reaped(ChildRecord& c, int status) = 0;

   protected:
    ~Sink() = default;
  };

  ExitWatcher(ChildTable& children, Sink& sink) : children_(children), sink_(sink) {}

  // Opens the signalfd for SIGCHLD (which the caller has blocked) and adds
  // it to epoll. fd_limit: our RLIMIT_NOFILE; fds held long are moved to
  // share_below or above (0: left where they are). 0 or -errno.
  int init(int epoll, size_t fd_limit, int share_below);

  // c has just started (Running, counted in the table): gives it a pidfd in
  // the epoll set when the fd table has room, taking one from another child
  // when it has not. A child left without one is found by scanning on
  // SIGCHLD; since its SIGCHLD may have come before, look once now.
  void watch(ChildRecord& c);
  // c's leader is reaped: drops its pidfd, and its count if it had none.
  void forget(ChildRecord& c);

  void on_sigchld();
  void on_pidfd(pid_t pid);
  // waitpid(pid, WNOHANG), O(1): true if it had exited and is now reaped.
  bool reap_one(pid_t pid);
  // waitpid(-1) until none is left: O(children) in the kernel per call.
  void reap_all();
  // When a scan for merged SIGCHLDs is due, if one is.
  std::optional<Clock::time_point> scan_due() const;
  // Runs the scan if it is due.
  void tick(Clock::time_point now);
  void clear();

 private:
  void reaped(pid_t pid, int status);
  // c stops holding a pidfd (its exit is then found by scanning).
  void unwatch(ChildRecord& c);

  ChildTable& children_;
  Sink& sink_;
  unique_fd sigfd_;
  int epoll_ = -1;
  size_t fd_limit_ = 1024;
  int share_below_ = 0;
  // Children holding a pidfd, and the number running without one.
  std::unordered_set<pid_t> holders_;
  size_t unwatched_ = 0;
  bool scan_pending_ = false;  // a scan is due at scan_at_
  Clock::time_point scan_at_;
};

}  // namespace corral::spawner
