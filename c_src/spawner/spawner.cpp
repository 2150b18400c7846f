// The spawner's event loop: spawn requests, control sockets, reaping and
// kill escalation, all driven by one epoll set.
#include "spawner.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <vector>

namespace corral::spawner {
namespace {

// epoll_event.data.u64 for the two fixed fds; control sockets use the pid,
// exec-status pipes the pid with kLaunchBit.
constexpr uint64_t kRequestTag = UINT64_MAX;
constexpr uint64_t kSignalTag = UINT64_MAX - 1;
constexpr uint64_t kLaunchBit = uint64_t{1} << 32;
constexpr uint64_t kPidfdBit = uint64_t{1} << 33;

// fds kept free of pidfds: the fixed ones, and the pipes, status pipes and
// control sockets of children between clone and exec (5 each). A running
// child needs its control socket; its pidfd only makes its exit cheap to
// find, so pidfds give way (are closed) as children fill the fd table.
constexpr size_t kFdReserve = 64 + 5 * Spawner::kMaxPending;
// The fds a child being started may use lie below this (see share_below_).
constexpr size_t kShareBelow = 1024;

// How often the draining set is polled, and when we stop waiting for a
// process group and cgroup to empty after its leader was reaped.
constexpr auto kDrainTick = std::chrono::milliseconds(20);
constexpr auto kDrainLimit = std::chrono::seconds(2);
// How soon a scan follows a SIGCHLD while some child has no pidfd.
constexpr auto kScanDelay = std::chrono::milliseconds(20);

// Clean leaves kept for reuse.
constexpr size_t kCleanLeaves = 16;
// How long the VM's death (request EOF) waits for the cgroups to empty.
constexpr auto kFinalWait = std::chrono::seconds(1);

// Frames handled per readiness event, so one busy socket cannot starve others.
constexpr int kBatch = 32;

void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "corral_spawner[%d]: %s\n", static_cast<int>(getpid()), line);
}

bool set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

void send_error(int ctl, int err, const char* stage) {
  frame::Frame f;
  f.type = frame::Type::Error;
  f.a = err;
  f.payload = stage;
  if (int rc = frame::send_frame(ctl, f, nullptr, 0); rc < 0)
    logf("cannot send Error(%s): %s", stage, strerror(-rc));
}

}  // namespace

Spawner::Spawner(unique_fd request) : request_(std::move(request)) {}

Spawner::~Spawner() = default;

int Spawner::init() {
  // A SIGCHLD inherited as SIG_IGN would make the kernel reap our children.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  if (sigaction(SIGCHLD, &dfl, nullptr) < 0) return -errno;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0) return -errno;
  sigfd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) return -errno;
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return -errno;
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return -errno;
  if (fcntl(request_.get(), F_SETFD, FD_CLOEXEC) < 0 || !set_nonblock(request_.get()))
    return -errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kRequestTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, request_.get(), &ev) < 0) return -errno;
  ev.data.u64 = kSignalTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sigfd_.get(), &ev) < 0) return -errno;

  // 10,000 children hold 10,000 fds here (a control socket each).
  if (int rc = raise_nofile_limit(nofile_); rc < 0) {
    logf("cannot raise the open file limit: %s", strerror(-rc));
  } else {
    nofile_known_ = true;
  }
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0)
    fd_limit_ = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<size_t>(rl.rlim_cur);
  // A child copies our fd table at clone and closes it at exec: with 10,000
  // children running that is 10,000+ fds per spawn. Keep the low 1024 for
  // the fixed fds and the children being started, and the rest out of reach.
  if (fd_limit_ >= 4 * kShareBelow) share_below_ = static_cast<int>(kShareBelow);
  if (const char* v = getenv("CORRAL_SPAWNER_MAX_PENDING")) {
    long n = strtol(v, nullptr, 10);
    if (n >= 1 && static_cast<size_t>(n) <= kMaxPending) max_pending_ = static_cast<size_t>(n);
  }
  // Children reset only the dispositions we changed (normally none).
  if (int rc = handled_signals(reset_signals_); rc < 0) {
    logf("cannot read signal dispositions: %s", strerror(-rc));
    reset_signals_ = ~uint64_t{0};
  }
  // A leaf cgroup per child catches descendants that leave the process group
  // (setsid, double fork). Without one, process groups are all we have.
  std::string why;
  if (cgroup::make_base(getpid(), base_, why) < 0) {
    logf("no cgroup containment, using process groups only: %s", why.c_str());
  } else {
    base_fd_.reset(open(base_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!base_fd_) logf("cannot open %s: %s", base_.path().c_str(), strerror(errno));
  }
  devnull_.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
  return 0;
}

int Spawner::run() {
  epoll_event events[64];
  while (!done_) {
    int n = epoll_wait(epoll_.get(), events, 64, epoll_timeout());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      logf("epoll_wait: %s", strerror(err));
      kill_everything();
      return -err;
    }
    for (int i = 0; i < n && !done_; i++) {
      uint64_t tag = events[i].data.u64;
      if (tag == kRequestTag) {
        // While paused only a hang-up is watched for: the VM is gone.
        if (request_paused_ && (events[i].events & (EPOLLRDHUP | EPOLLHUP)))
          done_ = true;
        else
          on_request();
      } else if (tag == kSignalTag) {
        on_sigchld();
      } else if (tag & kLaunchBit) {
        on_launch(static_cast<pid_t>(tag & ~kLaunchBit));
      } else if (tag & kPidfdBit) {
        on_pidfd(static_cast<pid_t>(tag & ~kPidfdBit));
      } else {
        on_ctl(static_cast<pid_t>(tag));
      }
    }
    if (done_) break;
    prepare_spare();
    fire_deadlines();
    if (scan_pending_ && Clock::now() >= scan_at_) {
      scan_pending_ = false;
      reap_all();
    }
    if (!draining_.empty()) check_draining();
  }
  kill_everything();
  return 0;
}

// --- requests ---------------------------------------------------------------

// Stops or resumes reading requests (but never stops noticing the VM's end).
void Spawner::pause_requests(bool pause) {
  if (pause == request_paused_) return;
  epoll_event ev{};
  ev.events = pause ? EPOLLRDHUP : EPOLLIN;
  ev.data.u64 = kRequestTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, request_.get(), &ev) == 0) request_paused_ = pause;
}

void Spawner::on_request() {
  for (int i = 0; i < kBatch; i++) {
    if (pending_.size() >= max_pending_) {
      pause_requests(true);  // resumed by on_launch
      return;
    }
    frame::Frame f;
    std::vector<int> fds;
    int rc = frame::recv_frame(request_.get(), f, fds);
    if (rc == -EAGAIN) return;
    if (rc == 0) {
      done_ = true;  // the VM is gone
      return;
    }
    if (rc == -EBADMSG) {
      logf("dropped a malformed request frame");
      continue;
    }
    if (rc < 0) {
      logf("request socket: %s", strerror(-rc));
      done_ = true;
      return;
    }
    handle_spawn(f, fds);
  }
}

// Makes a fresh leaf. 0 or -errno (logged unless quiet: a spare that cannot
// be made is retried at the spawn, which reports the error).
int Spawner::make_leaf(cgroup::Dir& leaf, bool quiet) {
  std::string path = base_.path() + "/c" + std::to_string(next_leaf_++);
  int rc = cgroup::Dir::make(path, leaf);
  if (rc < 0 && !quiet) logf("cannot make cgroup %s: %s", path.c_str(), strerror(-rc));
  return rc;
}

// A leaf for the next child, clean or new, and its cgroup.procs opened for
// the child to join. 0 or -errno (logged).
int Spawner::take_leaf(cgroup::Dir& leaf, unique_fd& procs, unique_fd& dir) {
  if (!clean_leaves_.empty()) {
    leaf = std::move(clean_leaves_.back());
    clean_leaves_.pop_back();
  } else if (int rc = make_leaf(leaf, false); rc < 0) {
    return rc;
  }
  if (use_clone3_) {
    // The directory itself, for clone3(CLONE_INTO_CGROUP).
    dir.reset(base_fd_ ? openat(base_fd_.get(), std::string(leaf.name()).c_str(),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                       : open(leaf.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) return 0;
  }
  // Without it the child moves itself in through cgroup.procs.
  int rc = leaf.open_procs();
  if (rc < 0) {
    logf("cannot open %s/cgroup.procs: %s", leaf.path().c_str(), strerror(-rc));
    return rc;
  }
  procs.reset(rc);
  return 0;
}

// A leaf no child of ours was ever killed in, and that is empty now.
void Spawner::give_back_leaf(cgroup::Dir& leaf) {
  if (leaf && clean_leaves_.size() < kCleanLeaves) clean_leaves_.push_back(std::move(leaf));
}

// Keeps one leaf ready, made after a spawn has been answered, so that the
// mkdir is not on the next spawn's path.
void Spawner::prepare_spare() {
  if (!base_ || !clean_leaves_.empty()) return;
  cgroup::Dir leaf;
  if (make_leaf(leaf, true) == 0) clean_leaves_.push_back(std::move(leaf));
}

void Spawner::handle_spawn(frame::Frame& f, std::vector<int>& raw_fds) {
  std::vector<unique_fd> fds;
  for (int fd : raw_fds) fds.emplace_back(fd);
  if (f.type != frame::Type::Spawn) {
    logf("dropped a request frame of type %u", static_cast<unsigned>(f.type));
    return;
  }
  if (fds.empty()) {
    logf("dropped a Spawn frame without a control socket");
    return;
  }
  unique_fd ctl = std::move(fds[0]);
  if (fds.size() != 1) {
    logf("bad spawn request: %zu descriptors attached, expected 1", fds.size());
    send_error(ctl.get(), EINVAL, "decode");
    return;
  }
  SpawnSpec spec;
  std::string why;
  std::string_view term = f.payload, cwd;
  if (f.b > 0 && static_cast<uint64_t>(f.b) <= f.payload.size()) {
    term = term.substr(0, static_cast<size_t>(f.b));
    cwd = std::string_view(f.payload).substr(static_cast<size_t>(f.b));
  }
  if (!decode_spawn_spec(term, spec, why)) {
    logf("bad spawn request: %s", why.c_str());
    send_error(ctl.get(), EINVAL, "decode");
    return;
  }
  resolve_cd(spec, cwd);

  // The leaf is removed by its destructor if anything below fails.
  cgroup::Dir leaf;
  unique_fd procs, dir;
  if (base_) {
    if (int rc = take_leaf(leaf, procs, dir); rc < 0) {
      send_error(ctl.get(), -rc, "cgroup");
      return;
    }
  }
  auto p = std::make_unique<Pending>();
  p->stop_signal = spec.stop_signal;
  p->kill_timeout_ms = spec.kill_timeout_ms;
  ChildContext ctx;
  ctx.cgroup_procs = procs.get();
  ctx.cgroup_dir = dir.get();
  ctx.nofile = nofile_known_ ? &nofile_ : nullptr;
  ctx.reset_signals = reset_signals_;
  ctx.devnull = devnull_.get();
  ctx.share_fds_below = share_below_;
  if (dir) {
    ctx.cgroup_procs_fallback = [&](int err) {
      // No clone3(CLONE_INTO_CGROUP) here (ENOSYS, E2BIG, EINVAL before 5.7):
      // from now on children move themselves in. Other errors fall back once.
      if (use_clone3_ && (err == ENOSYS || err == E2BIG || err == EINVAL)) {
        logf("clone3(CLONE_INTO_CGROUP): %s; children join their cgroup themselves", strerror(err));
        use_clone3_ = false;
      }
      int prc = leaf.open_procs();
      if (prc >= 0) procs.reset(prc);
      return prc;
    };
  }
  const char* stage = "";
  int rc = start_child(std::move(spec), ctx, p->launch, stage);
  procs.reset();
  dir.reset();
  if (rc < 0) {
    send_error(ctl.get(), -rc, stage);
    return;
  }
  pid_t pid = p->launch.pid();
  p->ctl = std::move(ctl);
  p->leaf = std::move(leaf);
  // A pid can only come back once its old owner was reaped; finish that.
  if (pending_.count(pid)) {
    on_launch(pid);
    pending_.erase(pid);
  }
  Pending& ref = *p;
  pending_.emplace(pid, std::move(p));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kLaunchBit | static_cast<uint64_t>(pid);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ref.launch.status_fd(), &ev) < 0) {
    // Wait here instead; the child is at most an execve away.
    logf("cannot watch the exec status of pid %d: %s", static_cast<int>(pid), strerror(errno));
    (void)ref.launch.wait();
    on_launch(pid);
  }
}

// The exec-status pipe of a pending child is readable: once it ends, the
// child has exec'd (send its pipes) or failed (send the error).
void Spawner::on_launch(pid_t pid) {
  auto it = pending_.find(pid);
  if (it == pending_.end()) return;  // stale event
  Launch::Result r = it->second->launch.poll();
  if (r == Launch::Result::Waiting) return;
  // The pipe is closed, and so out of the epoll set.
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  if (request_paused_ && pending_.size() <= max_pending_ / 2) pause_requests(false);
  if (r == Launch::Result::Failed) {
    // The child is exiting; reap it so that its leaf is empty.
    if (!p->reaped) {
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    send_error(p->ctl.get(), p->launch.error(), p->launch.stage());
    give_back_leaf(p->leaf);
    return;
  }
  launched(pid, *p);
}

void Spawner::launched(pid_t pid, Pending& p) {
  // A pid can only be reused once its old group is empty; finish that record.
  if (children_.count(pid)) finish(pid);

  auto t = std::make_unique<Tracked>();
  t->pid = pid;
  t->stop_signal = p.stop_signal;
  t->kill_timeout_ms = p.kill_timeout_ms;

  Child& c = p.launch.child();
  frame::Frame out;
  out.type = frame::Type::Fds;
  out.a = pid;
  out.b = c.mask();
  out.payload = p.leaf.path();  // the driver kills it itself if we die
  t->leaf = std::move(p.leaf);
  int pipes[3];
  size_t n = 0;
  for (const unique_fd* fd : {&c.in, &c.out, &c.err})
    if (*fd) pipes[n++] = fd->get();
  int rc = frame::send_frame(p.ctl.get(), out, pipes, n);
  c.in.reset();  // keep no copy of the child's pipes
  c.out.reset();
  c.err.reset();

  Tracked& ref = *t;
  children_.emplace(pid, std::move(t));
  bool watching = false;
  if (rc < 0) {
    logf("cannot send Fds for pid %d: %s", static_cast<int>(pid), strerror(-rc));
  } else {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(pid);
    move_up(p.ctl);
    if (!set_nonblock(p.ctl.get()) ||
        epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, p.ctl.get(), &ev) < 0) {
      logf("cannot watch the control socket of pid %d: %s", static_cast<int>(pid), strerror(errno));
    } else {
      ref.ctl = std::move(p.ctl);
      watching = true;
    }
  }
  if (p.reaped) {
    leader_reaped(ref, p.status);  // it already ran and exited
    return;
  }
  watch_exit(ref);
  if (!watching) escalate(ref);
}

// Gives t a pidfd in the epoll set when the fd table has room, taking one
// from another child when it has not. A child left without one is found by
// scanning on SIGCHLD; since its SIGCHLD may have come while it was between
// clone and exec, look once now.
void Spawner::watch_exit(Tracked& t) {
  size_t budget = fd_limit_ > kFdReserve ? fd_limit_ - kFdReserve : 0;
  bool room = children_.size() + pidfd_holders_.size() + 1 <= budget;
  if (room) {
    t.pidfd.reset(pidfd_open(t.pid));
    if (t.pidfd) move_up(t.pidfd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kPidfdBit | static_cast<uint64_t>(t.pid);
    if (t.pidfd && epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, t.pidfd.get(), &ev) == 0) {
      pidfd_holders_.insert(t.pid);
      return;
    }
    t.pidfd.reset();
  } else if (!pidfd_holders_.empty() && children_.size() + pidfd_holders_.size() > budget) {
    // Keep room for control sockets: another child gives its pidfd up.
    auto it = children_.find(*pidfd_holders_.begin());
    if (it != children_.end()) unwatch_exit(*it->second);
  }
  t.unwatched = true;
  unwatched_++;
  (void)reap_one(t.pid);
}

void Spawner::move_up(unique_fd& fd) const {
  if (share_below_ == 0 || fd.get() >= share_below_) return;
  int high = fcntl(fd.get(), F_DUPFD_CLOEXEC, share_below_);
  if (high >= 0) fd.reset(high);
}

// t stops holding a pidfd (its exit is then found by scanning).
void Spawner::unwatch_exit(Tracked& t) {
  if (!t.pidfd) return;
  t.pidfd.reset();  // and so out of the epoll set
  pidfd_holders_.erase(t.pid);
  if (t.state == State::Draining) return;
  t.unwatched = true;
  unwatched_++;
  // Its exit may be in already, its SIGCHLD passed over for the pidfd's
  // event that was just dropped: look once now.
  (void)reap_one(t.pid);
}

void Spawner::on_pidfd(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end() || !it->second->pidfd) return;  // stale event
  (void)reap_one(pid);
}

// --- control sockets --------------------------------------------------------

void Spawner::on_ctl(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end() || !it->second->ctl) return;  // stale event
  Tracked& t = *it->second;
  for (int i = 0; i < kBatch; i++) {
    frame::Frame f;
    std::vector<int> raw;
    int rc = frame::recv_frame(t.ctl.get(), f, raw);
    for (int fd : raw) close(fd);  // the driver never sends fds here
    if (rc == -EAGAIN) return;
    if (rc == -EBADMSG) continue;
    if (rc <= 0) {
      owner_gone(t);
      return;
    }
    if (f.type == frame::Type::Signal) {
      if (t.state != State::Draining && f.a >= 1 && f.a <= 64)
        (void)kill(-t.pid, static_cast<int>(f.a));
    } else if (f.type == frame::Type::Stop) {
      escalate(t);
    }
  }
}

void Spawner::owner_gone(Tracked& t) {
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, t.ctl.get(), nullptr);
  t.ctl.reset();
  escalate(t);
}

// --- escalation -------------------------------------------------------------

void Spawner::signal_leader(Tracked& t, int sig) {
  // Only called before the leader is reaped: as its unreaped parent we pin
  // its pid, so neither the pidfd nor kill() can reach another process. A
  // child without a held pidfd (see watch_exit) gets one opened for this.
  if (t.pidfd && pidfd_send_signal(t.pidfd.get(), sig) == 0) return;
  unique_fd pidfd(t.pidfd ? -1 : pidfd_open(t.pid));
  if (pidfd && pidfd_send_signal(pidfd.get(), sig) == 0) return;
  (void)kill(t.pid, sig);
}

void Spawner::escalate(Tracked& t) {
  if (t.state != State::Running) return;
  t.state = State::Stopping;
  (void)kill(-t.pid, t.stop_signal);
  signal_leader(t, t.stop_signal);
  // Saturate absurd timeouts instead of overflowing the clock.
  int64_t ms = std::min<int64_t>(t.kill_timeout_ms, int64_t{1} << 40);
  t.deadline = deadlines_.emplace(Clock::now() + std::chrono::milliseconds(ms), t.pid);
  t.has_deadline = true;
}

void Spawner::clear_deadline(Tracked& t) {
  if (!t.has_deadline) return;
  deadlines_.erase(t.deadline);
  t.has_deadline = false;
}

void Spawner::fire_deadlines() {
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    pid_t pid = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = children_.find(pid);
    if (it == children_.end()) continue;
    Tracked& t = *it->second;
    t.has_deadline = false;
    if (t.state == State::Stopping) {
      (void)kill(-t.pid, SIGKILL);
      signal_leader(t, SIGKILL);
      if (t.leaf) {
        (void)t.leaf.kill();
        t.leaf_killed = true;
      }
    }
  }
}

int Spawner::epoll_timeout() const {
  if (deadlines_.empty() && draining_.empty() && !scan_pending_) return -1;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kDrainLimit);
  bool bounded = false;
  if (!draining_.empty()) {
    wait = kDrainTick;
    bounded = true;
  }
  // Round up, so that we never wake just before a deadline and spin.
  auto until = [&](Clock::time_point t) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now());
    if (!bounded || ms < wait) wait = ms;
    bounded = true;
  };
  if (!deadlines_.empty()) until(deadlines_.begin()->first);
  if (scan_pending_) until(scan_at_);
  return static_cast<int>(std::clamp<int64_t>(wait.count(), 0, INT_MAX));
}

// --- reaping ----------------------------------------------------------------

// waitpid(-1) walks all of our children in the kernel, so with thousands
// running it is avoided: a child with a pidfd is reaped when that fires, a
// child between clone and exec when its exec status ends, and the pid a
// SIGCHLD names is reaped by itself (O(1)). A scan of all is left for when
// a child runs without a pidfd, and for orphans (escapees that came to us
// as subreaper): SIGCHLDs merge, so one orphan's exit may hide another's.
void Spawner::on_sigchld() {
  bool orphan = false;
  signalfd_siginfo si;
  while (read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    auto pid = static_cast<pid_t>(si.ssi_pid);
    if (pending_.count(pid)) continue;  // its exec status tells
    if (auto it = children_.find(pid); it != children_.end() && it->second->pidfd) continue;
    bool ours = children_.count(pid) > 0;
    if (reap_one(pid)) orphan = orphan || !ours;  // an orphan: there may be more
    // Not reaped: done already, through its pidfd.
  }
  if (orphan) {
    reap_all();
  } else if (unwatched_ > 0 && !scan_pending_) {
    // A child without a pidfd whose SIGCHLD merged into this one is found
    // by a scan shortly: one per kScanDelay at most, however many exits.
    scan_pending_ = true;
    scan_at_ = Clock::now() + kScanDelay;
  }
  if (!draining_.empty()) check_draining();
}

bool Spawner::reap_one(pid_t pid) {
  int status;
  if (waitpid(pid, &status, WNOHANG) != pid) return false;
  on_reaped(pid, status);
  return true;
}

void Spawner::reap_all() {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;  // 0: none ready; -1: ECHILD
    on_reaped(pid, status);
  }
}

void Spawner::on_reaped(pid_t pid, int status) {
  if (auto pit = pending_.find(pid); pit != pending_.end()) {
    // Exited before we read its exec status: keep the status for then.
    pit->second->reaped = true;
    pit->second->status = status;
    return;
  }
  auto it = children_.find(pid);
  // Unknown pids are orphans that came to us as subreaper: just reaped.
  if (it != children_.end() && it->second->state != State::Draining)
    leader_reaped(*it->second, status);
}

void Spawner::leader_reaped(Tracked& t, int status) {
  t.status = status;
  if (t.pidfd) {
    t.pidfd.reset();
    pidfd_holders_.erase(t.pid);
  }
  if (t.unwatched) {
    t.unwatched = false;
    unwatched_--;
  }
  clear_deadline(t);
  t.state = State::Draining;
  t.drain_started = Clock::now();
  // Stragglers in the group (a background job holding stdout) die with it,
  // and so does everything in the leaf, in the group or not. Never reuse a
  // killed leaf: later children cloned into it would die at birth. A leaf
  // that is already empty needs no kill, and can serve another child.
  bool group_empty = kill(-t.pid, SIGKILL) < 0 && errno == ESRCH;
  int populated = leaf_populated(t);
  if (populated != 0) {
    t.leaf_killed = true;
    if (int rc = t.leaf.kill(); rc < 0)
      logf("cannot kill cgroup %s: %s", t.leaf.path().c_str(), strerror(-rc));
  }
  if (group_empty && populated == 0) {
    finish(t.pid);  // the usual case: nothing outlived the leader
    return;
  }
  draining_.insert(t.pid);
}

int Spawner::leaf_populated(const Tracked& t) const {
  if (!t.leaf) return 0;
  return base_fd_ ? t.leaf.populated(base_fd_.get()) : t.leaf.populated();
}

void Spawner::check_draining() {
  // Killed escapees were reparented to us; reap them before judging.
  reap_all();
  auto now = Clock::now();
  std::vector<pid_t> done;
  for (pid_t pid : draining_) {
    const Tracked& t = *children_.at(pid);
    bool group_empty = kill(-pid, 0) < 0 && errno == ESRCH;
    // An unreadable cgroup.events cannot be waited on; do not hang on it.
    bool leaf_empty = group_empty && leaf_populated(t) <= 0;
    if (group_empty && leaf_empty) {
      done.push_back(pid);
    } else if (now - t.drain_started >= kDrainLimit) {
      logf("%s of %d still not empty after its leader exited; reporting anyway",
           group_empty ? "cgroup" : "process group", static_cast<int>(pid));
      done.push_back(pid);
    } else if (!group_empty) {
      (void)kill(-pid, SIGKILL);  // anything forked since the last kill
    }
  }
  for (pid_t pid : done) finish(pid);
}

void Spawner::finish(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end()) return;
  Tracked& t = *it->second;
  if (t.ctl) {
    frame::Frame f;
    f.type = frame::Type::Exit;
    f.a = t.status;
    if (int rc = frame::send_frame(t.ctl.get(), f, nullptr, 0); rc < 0 && rc != -EPIPE)
      logf("cannot send Exit for pid %d: %s", static_cast<int>(pid), strerror(-rc));
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, t.ctl.get(), nullptr);
  }
  clear_deadline(t);
  draining_.erase(pid);
  if (t.leaf && !t.leaf_killed && clean_leaves_.size() < kCleanLeaves) {
    clean_leaves_.push_back(std::move(t.leaf));
  } else if (int rc = t.leaf.remove(); rc < 0) {
    // EBUSY after the give-up above; the base's removal at exit sweeps it.
    logf("cannot remove cgroup %s: %s", t.leaf.path().c_str(), strerror(-rc));
  }
  children_.erase(it);
}

void Spawner::kill_everything() {
  for (auto& [pid, p] : pending_) {
    (void)kill(-pid, SIGKILL);
    (void)kill(pid, SIGKILL);
  }
  pending_.clear();  // waits for each to be off our memory
  for (auto& [pid, t] : children_) {
    (void)kill(-pid, SIGKILL);
    if (t->state != State::Draining) signal_leader(*t, SIGKILL);
  }
  // cgroup.kill on the base kills every leaf below it at once, escapees
  // included; then wait for them to go and remove the leaves and the base.
  if (base_) {
    if (int rc = base_.destroy(std::chrono::duration_cast<std::chrono::milliseconds>(kFinalWait));
        rc < 0)
      logf("cannot remove cgroup %s: %s", base_.path().c_str(), strerror(-rc));
  }
  children_.clear();
  draining_.clear();
  deadlines_.clear();
  pidfd_holders_.clear();
  unwatched_ = 0;
}

}  // namespace corral::spawner
