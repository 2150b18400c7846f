// waitpid(-1) walks all of our children in the kernel, so with thousands
// running it is avoided: a child with a pidfd is reaped when that fires, a
// child between clone and exec when its exec status ends, and the pid a
// SIGCHLD names is reaped by itself (O(1)). A scan of all is left for when a
// child runs without a pidfd, and for orphans (escapees that came to us as
// subreaper): SIGCHLDs merge, so one orphan's exit may hide another's.
#include "exit_watch.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

#include "epoll_tags.h"

namespace corral::spawner {
namespace {

// fds kept free of pidfds: the fixed ones, and the pipes, status pipes and
// control sockets of children between clone and exec (5 each). A running
// child needs its control socket; its pidfd only makes its exit cheap to
// find, so pidfds give way (are closed) as children fill the fd table.
constexpr size_t kFdReserve = 64 + 5 * kMaxPending;
// How soon a scan follows a SIGCHLD while some child has no pidfd.
constexpr auto kScanDelay = std::chrono::milliseconds(20);

}  // namespace

int ExitWatcher::init(int epoll, size_t fd_limit, int share_below) {
  epoll_ = epoll;
  fd_limit_ = fd_limit;
  share_below_ = share_below;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigfd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) return -errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kSignalTag;
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, sigfd_.get(), &ev) < 0) return -errno;
  return 0;
}

void ExitWatcher::watch(ChildRecord& c) {
  // Control sockets and pidfds live above share_below_ (move_above), where
  // the fd numbers are those between it and the limit; below it are kept
  // for the children being started (and their copies of our table).
  size_t floor = std::max<size_t>(kFdReserve, static_cast<size_t>(std::max(share_below_, 0)));
  size_t budget = fd_limit_ > floor ? fd_limit_ - floor : 0;
  size_t started = children_.started_count();
  if (started + holders_.size() + 1 <= budget) {
    c.pidfd.reset(pidfd_open(c.pid));
    move_above(c.pidfd, share_below_);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kPidfdBit | static_cast<uint64_t>(c.pid);
    if (c.pidfd && epoll_ctl(epoll_, EPOLL_CTL_ADD, c.pidfd.get(), &ev) == 0) {
      holders_.insert(c.pid);
      return;
    }
    c.pidfd.reset();
  } else if (!holders_.empty() && started + holders_.size() > budget) {
    // Keep room for control sockets: another child gives its pidfd up.
    if (ChildRecord* other = children_.find(*holders_.begin())) unwatch(*other);
  }
  c.unwatched = true;
  unwatched_++;
  (void)reap_one(c.pid);
}

void ExitWatcher::unwatch(ChildRecord& c) {
  if (!c.pidfd) return;
  c.pidfd.reset();  // and so out of the epoll set
  holders_.erase(c.pid);
  if (c.state == ChildState::Draining) return;
  c.unwatched = true;
  unwatched_++;
  // Its exit may be in already, its SIGCHLD passed over for the pidfd's
  // event that was just dropped: look once now.
  (void)reap_one(c.pid);
}

void ExitWatcher::forget(ChildRecord& c) {
  if (c.pidfd) {
    c.pidfd.reset();
    holders_.erase(c.pid);
  }
  if (c.unwatched) {
    c.unwatched = false;
    unwatched_--;
  }
}

void ExitWatcher::on_pidfd(pid_t pid) {
  ChildRecord* c = children_.find(pid);
  if (!c || !c->pidfd) return;  // stale event
  (void)reap_one(pid);
}

void ExitWatcher::on_sigchld() {
  bool orphan = false;
  // Several at a time; a short read has emptied the queue, and asking
  // again would only return EAGAIN.
  signalfd_siginfo si[8];
  ssize_t n;
  do {
    n = read(sigfd_.get(), si, sizeof si);
    for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof si[0]); i++) {
      auto pid = static_cast<pid_t>(si[i].ssi_pid);
      ChildRecord* c = children_.find(pid);
      if (c && c->state == ChildState::Launching) continue;  // its exec status tells
      if (c && c->pidfd) continue;
      if (reap_one(pid)) orphan = orphan || !c;  // an orphan: there may be more
      // Not reaped: done already, through its pidfd.
    }
  } while (n == static_cast<ssize_t>(sizeof si));
  if (orphan) {
    reap_all();
  } else if (unwatched_ > 0 && !scan_pending_) {
    // A child without a pidfd whose SIGCHLD merged into this one is found
    // by a scan shortly: one per kScanDelay at most, however many exits.
    scan_pending_ = true;
    scan_at_ = Clock::now() + kScanDelay;
  }
}

bool ExitWatcher::reap_one(pid_t pid) {
  int status;
  if (waitpid(pid, &status, WNOHANG) != pid) return false;
  reaped(pid, status);
  return true;
}

void ExitWatcher::reap_all() {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;  // 0: none ready; -1: ECHILD
    reaped(pid, status);
  }
}

// Unknown pids are orphans that came to us as subreaper: just reaped.
void ExitWatcher::reaped(pid_t pid, int status) {
  if (ChildRecord* c = children_.find(pid)) sink_.on_reaped(*c, status);
}

std::optional<Clock::time_point> ExitWatcher::scan_due() const {
  if (!scan_pending_) return std::nullopt;
  return scan_at_;
}

void ExitWatcher::tick(Clock::time_point now) {
  if (!scan_pending_ || now < scan_at_) return;
  scan_pending_ = false;
  reap_all();
}

void ExitWatcher::clear() {
  holders_.clear();
  unwatched_ = 0;
  scan_pending_ = false;
}

}  // namespace corral::spawner
