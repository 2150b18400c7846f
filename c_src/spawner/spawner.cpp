// The spawner's event loop: spawn requests, control sockets and kill
// escalation, all driven by one epoll set.
#include "spawner.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <vector>

#include "epoll_tags.h"
#include "group_kill.h"
#include "log.h"

namespace corral::spawner {
namespace {

// The fds a child being started may use lie below this (see share_below_).
constexpr size_t kShareBelow = 1024;

// How often the draining set is polled, and when we stop waiting for a
// process group and cgroup to empty after its leader was reaped.
constexpr auto kDrainTick = std::chrono::milliseconds(20);
constexpr auto kDrainLimit = std::chrono::seconds(2);

// How long the VM's death (request EOF) waits for the cgroups to empty.
constexpr auto kFinalWait = std::chrono::seconds(1);

// Frames handled per readiness event, so one busy socket cannot starve others.
constexpr int kBatch = 32;

// Start reports held back at once, at most: each holds up to three pipe
// ends in the fds below share_below_, where the children being started
// need room. Beyond it a report goes out at once.
constexpr size_t kMaxHeldReports = 64;

bool set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  // The driver makes control sockets non-blocking already: one call, not two.
  return fl >= 0 && ((fl & O_NONBLOCK) || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

void send_error(int ctl, int err, const char* stage, LogOnce& failed, std::string detail = {}) {
  if (int rc = frame::send_frame(ctl, frame::ErrorFrame{err, stage, std::move(detail)});
      rc < 0 && !owner_gone_error(rc))
    failed("cannot send Error(%s): %s", stage, strerror(-rc));
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
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return -errno;
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return -errno;
  if (fcntl(request_.get(), F_SETFD, FD_CLOEXEC) < 0 || !set_nonblock(request_.get()))
    return -errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kRequestTag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, request_.get(), &ev) < 0) return -errno;

  // 10,000 children hold 10,000 fds here (a control socket each).
  if (int rc = raise_nofile_limit(nofile_); rc < 0) {
    logf("cannot raise the open file limit: %s", strerror(-rc));
  } else {
    nofile_known_ = true;
  }
  size_t fd_limit = 1024;
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    fd_limit = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<size_t>(rl.rlim_cur);
    if (rl.rlim_cur != RLIM_INFINITY) fd_limit_ = rl.rlim_cur;
  }
  self_ = getpid();
  // A child copies our fd table at clone and closes it at exec: with 10,000
  // children running that is 10,000+ fds per spawn. Keep the low 1024 for
  // the fixed fds and the children being started, and the rest out of reach.
  if (fd_limit >= 4 * kShareBelow) share_below_ = static_cast<int>(kShareBelow);
  if (int rc = exits_.init(epoll_.get(), fd_limit, share_below_); rc < 0) return rc;
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
  {
    std::string why;
    if (leaves_.init(getpid(), why) < 0)
      logf("no cgroup containment, using process groups only: %s", why.c_str());
    cgroup::Hierarchies h;
    cgroup::discover(h);
    placer_.init(getpid(), std::move(h), leaves_.base_path(), std::move(why));
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
        exits_.on_sigchld();
      } else if (tag & kLaunchBit) {
        on_launch(static_cast<pid_t>(tag & ~kLaunchBit));
      } else if (tag & kPidfdBit) {
        exits_.on_pidfd(static_cast<pid_t>(tag & ~kPidfdBit));
      } else if (tag & kEventsBit) {
        on_events(static_cast<pid_t>(tag & ~kEventsBit));
      } else {
        on_ctl(static_cast<pid_t>(tag));
      }
    }
    if (done_) break;
    leaves_.prepare_spare();
    if (!held_reports_.empty()) release_due_reports();
    fire_deadlines();
    exits_.tick(Clock::now());
    if (!events_due_.empty()) poll_events();
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
    if (children_.launching() >= max_pending_) {
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
      bad_request_("dropped a malformed request frame");
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

void Spawner::handle_spawn(frame::Frame& f, std::vector<int>& raw_fds) {
  std::vector<unique_fd> fds;
  fds.reserve(raw_fds.size());
  for (int fd : raw_fds) fds.emplace_back(fd);
  auto* req = std::get_if<frame::SpawnFrame>(&f);
  if (!req) {
    bad_request_("dropped a request frame of type %u", static_cast<unsigned>(frame::type_of(f)));
    return;
  }
  if (fds.empty()) {
    bad_request_("dropped a Spawn frame without a control socket");
    return;
  }
  unique_fd ctl = std::move(fds[0]);
  if (fds.size() != 1) {
    bad_request_("bad spawn request: %zu descriptors attached, expected 1", fds.size());
    send_error(ctl.get(), EINVAL, "decode", send_failed_);
    return;
  }
  SpawnSpec spec;
  std::string why;
  if (!decode_spawn_spec(req->term, spec, why)) {
    bad_request_("bad spawn request: %s", why.c_str());
    send_error(ctl.get(), EINVAL, "decode", send_failed_);
    return;
  }
  resolve_cd(spec, req->cwd);

  auto c = std::make_unique<ChildRecord>();
  c->stop_signal = spec.stop_signal;
  c->report_delay_ms = spec.report_delay_ms;
  c->kill_timeout_ms = spec.kill_timeout_ms;
  // The leaf is removed by its destructor if the launch fails.
  cgroup::Dir leaf;
  const char* stage = "";
  cgroup_why_.clear();
  if (int rc = launch(spec, leaf, *c, stage); rc < 0) {
    send_error(ctl.get(), -rc, stage, send_failed_, std::move(cgroup_why_));
    return;
  }
  pid_t pid = c->launch.pid();
  c->pid = pid;
  c->ctl = std::move(ctl);
  c->leaf = std::move(leaf);
  // A pid can only come back once its old owner was reaped; finish that,
  // without a signal to the pid or group, which are the new child's now.
  if (ChildRecord* old = children_.find(pid)) {
    old->pid_reused = true;
    if (old->state == ChildState::Launching) on_launch(pid);
    old = children_.find(pid);
    if (old && old->state == ChildState::Launching) {
      children_.erase(pid);
    } else if (old) {
      finish(pid);
    }
  }
  ChildRecord& ref = children_.add(std::move(c));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kLaunchBit | static_cast<uint64_t>(pid);
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ref.launch.status_fd(), &ev) < 0) {
    // Wait here instead; the child is at most an execve away.
    watch_failed_("cannot watch the exec status of pid %d: %s", static_cast<int>(pid),
                  strerror(errno));
    (void)ref.launch.wait();
    on_launch(pid);
  }
}

// Takes a leaf and starts spec into it. Where clone3(CLONE_INTO_CGROUP) is
// refused, starts it again with the child joining through cgroup.procs.
// 0, or -errno with stage set.
int Spawner::launch(SpawnSpec& spec, cgroup::Dir& leaf, ChildRecord& c, const char*& stage) {
  unique_fd procs, dir;
  std::vector<unique_fd> join;
  if (!spec.cgroup.empty()) {
    if (int rc = place(spec.cgroup, c, dir, procs, join); rc < 0) {
      stage = "cgroup";
      return rc;
    }
    leaf = std::move(c.leaf);
  }
  if (spec.memory_events.keys) {
    // Armed before the clone, so that nothing the child does is missed;
    // watched from the epoll set once it runs (started()).
    std::vector<std::string> v1;
    for (const cgroup::Dir& d : c.v1_leaves) v1.push_back(d.path());
    if (int rc = c.memory_events.open(spec.memory_events, leaf.path(), v1, cgroup_why_); rc < 0) {
      cgroup_failed_("%s", cgroup_why_.c_str());
      stage = "cgroup";
      return rc;
    }
  }
  if (leaves_ && !leaf) {
    if (int rc = leaves_.take(leaf, procs, dir); rc < 0) {
      stage = "cgroup";
      return rc;
    }
  }
  std::vector<int> join_fds;
  join_fds.reserve(join.size());
  for (const unique_fd& fd : join) join_fds.push_back(fd.get());
  ChildContext ctx;
  ctx.cgroup_procs = procs.get();
  ctx.cgroup_dir = dir.get();
  ctx.join_procs = join_fds.data();
  ctx.n_join_procs = join_fds.size();
  ctx.nofile = nofile_known_ ? &nofile_ : nullptr;
  ctx.reset_signals = reset_signals_;
  ctx.devnull = devnull_.get();
  ctx.self = self_;
  ctx.fd_limit = fd_limit_;
  ctx.share_fds_below = share_below_;
  int rc = start_child(std::move(spec), ctx, c.launch, stage);
  if (rc < 0 && dir && strcmp(stage, "clone3") == 0) {
    int prc = leaves_.clone3_refused(leaf, -rc);
    if (prc < 0) {
      stage = "cgroup";
      return prc;
    }
    procs.reset(prc);
    ctx.cgroup_procs = procs.get();
    // start_child moves from spec only when it succeeds: the failed attempt
    // above gave it back.
    // NOLINTNEXTLINE(bugprone-use-after-move): see above
    rc = start_child(std::move(spec), ctx, c.launch, stage);
  }
  return rc;
}

int Spawner::place(const CgroupSpec& spec, ChildRecord& c, unique_fd& dir, unique_fd& procs,
                   std::vector<unique_fd>& join) {
  cgroup::Placement p;
  std::string why;
  int rc = placer_.place(spec, p, why);
  if (rc == 0 && p.v2) {
    c.leaf_private = true;
    if (can_clone_into_cgroup())
      dir.reset(open(p.v2.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      rc = p.v2.open_procs();
      if (rc >= 0)
        procs.reset(rc), rc = 0;
      else
        why = "cannot open " + p.v2.path() + "/cgroup.procs: " + strerror(-rc);
    }
  }
  if (rc < 0) {
    cgroup_failed_("cgroup: %s", why.c_str());
    cgroup_why_ = std::move(why);
    return rc;
  }
  c.leaf = std::move(p.v2);
  c.v1_leaves = std::move(p.v1);
  join = std::move(p.v1_procs);
  return 0;
}

// The exec-status pipe of a Launching child is readable: once it ends, the
// child has exec'd (send its pipes) or failed (send the error).
void Spawner::on_launch(pid_t pid) {
  ChildRecord* c = children_.find(pid);
  if (!c || c->state != ChildState::Launching) return;  // stale event
  Launch::Result r = c->launch.poll();
  if (r == Launch::Result::Waiting) return;
  // The pipe is closed, and so out of the epoll set.
  if (r == Launch::Result::Failed) {
    // The child is exiting; reap it so that its leaf is empty.
    if (!c->exited) {
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    send_error(c->ctl.get(), c->launch.error(), c->launch.stage(), send_failed_);
    leaves_.release(c->leaf, c->leaf_private);
    children_.erase(pid);
  } else {
    children_.started(*c);
  }
  if (request_paused_ && children_.launching() <= max_pending_ / 2) pause_requests(false);
  if (r == Launch::Result::Execed) started(*c);
}

void Spawner::started(ChildRecord& c) {
  pid_t pid = c.pid;
  // A child that has exited already is reported at once, with its Exit.
  bool hold = c.report_delay_ms > 0 && !c.exited && held_reports_.size() < kMaxHeldReports;
  bool reported = true;
  if (hold) {
    c.held = std::move(c.launch.child());
    c.report_due = Clock::now() + std::chrono::milliseconds(c.report_delay_ms);
    held_reports_.insert(pid);
  } else {
    reported = report_start(c, c.launch.child());
  }
  c.launch = Launch();  // keep no copy of the child's pipes

  bool watching = false;
  if (!reported) {
    // The child is stopped below as if it had closed its socket.
    c.ctl.reset();
  } else {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(pid);
    move_above(c.ctl, share_below_);
    if (!set_nonblock(c.ctl.get()) ||
        epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.ctl.get(), &ev) < 0) {
      watch_failed_("cannot watch the control socket of pid %d: %s", static_cast<int>(pid),
                    strerror(errno));
      c.ctl.reset();
    } else {
      watching = true;
    }
  }
  if (watching && c.memory_events) {
    c.memory_events.move_above(share_below_);
    for (int fd : c.memory_events.fds()) {
      epoll_event mev{};
      mev.events = EPOLLIN;
      mev.data.u64 = kEventsBit | static_cast<uint64_t>(pid);
      if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &mev) < 0) {
        // The child runs without notices; the last counts still go out
        // before its Exit (finish()).
        watch_failed_("cannot watch the memory events of pid %d: %s", static_cast<int>(pid),
                      strerror(errno));
        break;
      }
    }
  }
  if (c.exited) {
    leader_reaped(c);  // it already ran and exited
    return;
  }
  exits_.watch(c);  // may reap it, and so finish it
  if (!watching)
    if (ChildRecord* still = children_.find(pid)) escalate(*still);
}

bool Spawner::report_start(ChildRecord& c, Child& ch) {
  // The leaf goes too: the driver kills it itself if we die.
  frame::FdsFrame out{c.pid, ch.mask(), c.leaf.path(), {}};
  for (const cgroup::Dir& v1 : c.v1_leaves) out.v1_leaves.push_back(v1.path());
  int pipes[3];
  size_t n = 0;
  for (const unique_fd* fd : {&ch.in, &ch.out, &ch.err})
    if (*fd) pipes[n++] = fd->get();
  int rc = frame::send_frame(c.ctl.get(), out, pipes, n);
  ch = Child();
  if (rc == 0) return true;
  // EPIPE, ECONNRESET: the owner went away during the spawn, which is normal.
  if (!owner_gone_error(rc))
    send_failed_("cannot send Fds for pid %d: %s", static_cast<int>(c.pid), strerror(-rc));
  return false;
}

void Spawner::release_report(ChildRecord& c) {
  if (held_reports_.erase(c.pid) == 0) return;
  if (!c.ctl) {
    c.held = Child();
    return;
  }
  if (!report_start(c, c.held)) owner_gone(c);
}

void Spawner::release_due_reports() {
  auto now = Clock::now();
  std::vector<pid_t> due;
  // Every pid here has a record: finish() releases before it erases.
  for (pid_t pid : held_reports_)
    if (children_.find(pid)->report_due <= now) due.push_back(pid);
  for (pid_t pid : due) release_report(*children_.find(pid));
}

// --- control sockets --------------------------------------------------------

void Spawner::on_ctl(pid_t pid) {
  ChildRecord* c = children_.find(pid);
  if (!c || !c->ctl || c->state == ChildState::Launching) return;  // stale event
  for (int i = 0; i < kBatch; i++) {
    frame::Frame f;
    std::vector<int> raw;
    int rc = frame::recv_frame(c->ctl.get(), f, raw);
    for (int fd : raw) close(fd);  // the driver never sends fds here
    if (rc == -EAGAIN) return;
    if (rc == -EBADMSG) continue;
    if (rc <= 0) {
      owner_gone(*c);
      return;
    }
    if (auto* sig = std::get_if<frame::SignalFrame>(&f)) {
      if (c->state != ChildState::Draining && sig->signo >= 1 && sig->signo <= 64)
        (void)kill(-c->pid, sig->signo);
    } else if (std::holds_alternative<frame::StopFrame>(f)) {
      escalate(*c);
    }
  }
}

void Spawner::owner_gone(ChildRecord& c) {
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.ctl.get(), nullptr);
  c.ctl.reset();
  release_report(c);  // nobody to report to: the held pipes are closed
  escalate(c);
}

// --- escalation -------------------------------------------------------------

// Running -> Stopping: the stop signal now, SIGKILL at the kill timeout.
void Spawner::escalate(ChildRecord& c) {
  if (c.state != ChildState::Running) return;
  c.state = ChildState::Stopping;
  (void)kill(-c.pid, c.stop_signal);
  signal_leader(c, c.stop_signal);
  // Saturate absurd timeouts instead of overflowing the clock.
  int64_t ms = std::min<int64_t>(c.kill_timeout_ms, int64_t{1} << 40);
  c.deadline = deadlines_.emplace(Clock::now() + std::chrono::milliseconds(ms), c.pid);
  c.has_deadline = true;
}

void Spawner::clear_deadline(ChildRecord& c) {
  if (!c.has_deadline) return;
  deadlines_.erase(c.deadline);
  c.has_deadline = false;
}

void Spawner::fire_deadlines() {
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    pid_t pid = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    ChildRecord* c = children_.find(pid);
    if (!c) continue;
    c->has_deadline = false;
    if (c->state == ChildState::Stopping) {
      (void)kill_tree(c->pid, c->leaf ? c->leaf.path() : std::string());
      signal_leader(*c, SIGKILL);
      if (c->leaf) c->leaf_killed = true;
    }
  }
}

int Spawner::epoll_timeout() const {
  std::optional<Clock::time_point> scan = exits_.scan_due();
  std::optional<Clock::time_point> events;
  for (pid_t pid : events_due_) {
    const ChildRecord* c = children_.find(pid);
    if (c && c->memory_events.due() && (!events || *c->memory_events.due() < *events))
      events = c->memory_events.due();
  }
  std::optional<Clock::time_point> report;
  for (pid_t pid : held_reports_) {
    const ChildRecord& c = *children_.find(pid);
    if (!report || c.report_due < *report) report = c.report_due;
  }
  if (deadlines_.empty() && draining_.empty() && !scan && !events && !report) return -1;
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
  if (scan) until(*scan);
  if (events) until(*events);
  if (report) until(*report);
  return static_cast<int>(std::clamp<int64_t>(wait.count(), 0, INT_MAX));
}

// --- exits ------------------------------------------------------------------

void Spawner::on_reaped(ChildRecord& c, int status) {
  if (c.state == ChildState::Draining) return;
  c.exited = true;
  c.status = status;
  // Launching: exited before we read its exec status; started() goes on.
  if (c.state == ChildState::Launching) {
    c.launch.reaped();
  } else {
    leader_reaped(c);
  }
}

void Spawner::leader_reaped(ChildRecord& c) {
  exits_.forget(c);
  clear_deadline(c);
  c.state = ChildState::Draining;
  c.drain_started = Clock::now();
  // Stragglers in the group (a background job holding stdout) die with it,
  // and so does everything in the leaf, in the group or not. Never reuse a
  // killed leaf: later children cloned into it would die at birth. A leaf
  // that is already empty needs no kill, and can serve another child.
  bool group_empty = c.pid_reused || (kill(-c.pid, SIGKILL) < 0 && errno == ESRCH);
  int populated = leaves_.populated(c.leaf);
  if (populated != 0) {
    c.leaf_killed = true;
    if (int rc = c.leaf.kill(); rc < 0)
      kill_failed_("cannot kill cgroup %s: %s", c.leaf.path().c_str(), strerror(-rc));
  }
  for (const cgroup::Dir& v1 : c.v1_leaves) {
    if (v1.populated() == 0) continue;
    populated = 1;
    if (int rc = v1.kill(); rc < 0)
      kill_failed_("cannot kill cgroup %s: %s", v1.path().c_str(), strerror(-rc));
  }
  if (group_empty && populated == 0) {
    finish(c.pid);  // the usual case: nothing outlived the leader
    return;
  }
  draining_.insert(c.pid);
}

void Spawner::check_draining() {
  // Killed escapees were reparented to us; reap them before judging.
  exits_.reap_all();
  auto now = Clock::now();
  std::vector<pid_t> done;
  for (pid_t pid : draining_) {
    const ChildRecord& c = *children_.find(pid);
    bool group_empty = kill(-pid, 0) < 0 && errno == ESRCH;
    // An unreadable cgroup.events cannot be waited on; do not hang on it.
    bool leaf_empty = group_empty && leaves_.populated(c.leaf) <= 0;
    for (const cgroup::Dir& v1 : c.v1_leaves)
      if (leaf_empty && v1.populated() > 0) {
        leaf_empty = false;
        (void)v1.kill();  // v1 has no cgroup.kill: what joined since the last round
      }
    if (group_empty && leaf_empty) {
      done.push_back(pid);
    } else if (now - c.drain_started >= kDrainLimit) {
      not_empty_("%s of %d still not empty after its leader exited; reporting anyway",
                 group_empty ? "cgroup" : "process group", static_cast<int>(pid));
      done.push_back(pid);
    } else if (!group_empty) {
      (void)kill(-pid, SIGKILL);  // anything forked since the last kill
    }
  }
  for (pid_t pid : done) finish(pid);
}

// --- memory events ----------------------------------------------------------

void Spawner::on_events(pid_t pid) {
  ChildRecord* c = children_.find(pid);
  if (!c || !c->memory_events) return;  // stale event
  c->memory_events.woke(Clock::now());
  events_due_.insert(pid);
}

void Spawner::poll_events() {
  auto now = Clock::now();
  for (auto it = events_due_.begin(); it != events_due_.end();) {
    ChildRecord* c = children_.find(*it);
    if (!c || !c->ctl) {
      if (c) c->memory_events.close();  // nobody to tell
      it = events_due_.erase(it);
      continue;
    }
    events::Watch& w = c->memory_events;
    if (w.due() && *w.due() <= now) {
      frame::EventsFrame f;
      if (w.poll(now, f)) send_events(*c, f);
    }
    it = w.due() ? std::next(it) : events_due_.erase(it);
  }
}

void Spawner::send_events(ChildRecord& c, const frame::EventsFrame& f) {
  release_report(c);  // Events only ever follow the Fds frame
  if (!c.ctl) return;
  int rc = frame::send_frame(c.ctl.get(), f);
  if (rc == 0) {
    c.memory_events.sent(f);
  } else if (rc == -EAGAIN) {
    c.memory_events.retry(Clock::now());  // the owner's socket is full: a later snapshot
  } else if (!owner_gone_error(rc)) {
    send_failed_("cannot send Events for pid %d: %s", static_cast<int>(c.pid), strerror(-rc));
  }
}

// Sends Exit and removes the record.
void Spawner::finish(pid_t pid) {
  ChildRecord* c = children_.find(pid);
  if (!c) return;
  // A short child's start report goes now, just ahead of its Exit: the
  // owner's VM takes both, and the pipes' last bytes, in one wake-up.
  release_report(*c);
  if (c->memory_events) {
    // The last counts go out before the Exit, on the same socket: the owner
    // has them before the terminal message.
    frame::EventsFrame f;
    if (c->ctl && c->memory_events.last(f)) send_events(*c, f);
    c->memory_events.close();
    events_due_.erase(pid);
  }
  // The OOM killer leaves its count in the leaf that held the memory limit.
  bool oom = c->leaf && cgroup::oom_kills(c->leaf.path()) > 0;
  for (const cgroup::Dir& v1 : c->v1_leaves) oom = oom || cgroup::oom_kills(v1.path()) > 0;
  clear_deadline(*c);
  draining_.erase(pid);
  // The leaves go before the Exit: an owner that has the terminal message
  // finds no directory of this child left (a pooled leaf is kept, empty).
  bool killed = c->leaf_killed;
  leaves_.release(c->leaf, c->leaf_killed || c->leaf_private);
  for (cgroup::Dir& v1 : c->v1_leaves)
    if (int rc = v1.remove(); rc < 0)
      kill_failed_("cannot remove cgroup %s: %s", v1.path().c_str(), strerror(-rc));
  if (killed) placer_.sweep();
  if (c->ctl) {
    if (int rc = frame::send_frame(c->ctl.get(), frame::ExitFrame{c->status, oom});
        rc < 0 && !owner_gone_error(rc))
      send_failed_("cannot send Exit for pid %d: %s", static_cast<int>(pid), strerror(-rc));
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c->ctl.get(), nullptr);
  }
  children_.erase(pid);
}

void Spawner::kill_everything() {
  children_.for_each([](ChildRecord& c) {
    (void)kill(-c.pid, SIGKILL);
    if (c.state == ChildState::Launching) {
      (void)kill(c.pid, SIGKILL);
    } else if (c.state != ChildState::Draining) {
      signal_leader(c, SIGKILL);
    }
    // Leaves outside the base (cgroup_base, cgroup_path, v1) die one by one.
    if (c.leaf_private) (void)c.leaf.kill();
    for (const cgroup::Dir& v1 : c.v1_leaves) (void)v1.kill();
  });
  auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(kFinalWait);
  leaves_.destroy(limit);
  children_.for_each([&](ChildRecord& c) {
    if (c.leaf_private) (void)c.leaf.destroy(limit);
    for (cgroup::Dir& v1 : c.v1_leaves) (void)v1.destroy(limit);
  });
  placer_.destroy(limit);
  children_.clear();  // a Launching child's record waits for it to be off our memory
  draining_.clear();
  events_due_.clear();
  held_reports_.clear();
  deadlines_.clear();
  exits_.clear();
}

}  // namespace corral::spawner
