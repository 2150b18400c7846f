// corral_drv: the linked-in driver. One port per child process.
//
// Why a linked-in driver: the child's pipes are read on the VM's normal
// schedulers through driver_select, with no dirty-scheduler hop and no
// helper process copying every byte. The driver never forks: the VM ignores
// SIGCHLD (the kernel would reap our children and lose their status) and
// forking a large VM is slow, so every child is forked by the spawner
// (c_src/spawner/), which this file starts on first use.
//
// Life of a port (the phases are in lifecycle.h, the frames in
// c_src/common/frame.h):
//   Idle -> Spawning      port_control(SPAWN): a socketpair for the child's
//                         control socket; a Spawn frame with one end goes to
//                         the spawner
//   Spawning -> Running   ctl: Fds frame: adopt the pipes,
//                         {Port, {started, OsPid}}
//   Running               stdout/stderr ready: read while unacknowledged
//                         bytes < window, {Port, {data, stdout | stderr, Bin}}
//   -> Draining           ctl: Exit frame (or Error, or the spawner is
//                         lost): the outcome is known
//   Draining -> Terminated  stdout and stderr at EOF: the one terminal
//                         message, then the port closes
//   port closes early     the control socket closes, the spawner escalates
//
// Sections: globals and the spawner connection, per-port state, helpers,
// callbacks, entry.

#include <ei.h>
#include <erl_driver.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cgroup_table.h"
#include "control.h"
#include "corral_protocol.h"
#include "frame.h"
#include "group_kill.h"
#include "lifecycle.h"

// POSIX declares environ in no header (glibc does, under _GNU_SOURCE).
extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace {

using corral::driver::Control;
using corral::driver::Phase;
using corral::driver::Stdin;
using corral::frame::ErrorFrame;
using corral::frame::EventsFrame;
using corral::frame::ExitFrame;
using corral::frame::FdsFrame;
using corral::frame::Frame;
using corral::frame::SignalFrame;
using corral::frame::SpawnFrame;
using corral::frame::StopFrame;

// ---------------------------------------------------------------------------
// Control commands (port_control): OP_* from include/corral_protocol.hrl,
// through the header CMake generates from it.
namespace op = corral::protocol;

// stdin queue: above kHighWater the port is busy and port_command suspends
// its caller; below kLowWater it is released again.
constexpr ErlDrvSizeT kHighWater = 1 << 20;
constexpr ErlDrvSizeT kLowWater = 256 << 10;
// Largest single read from a child's pipe.
constexpr ErlDrvSizeT kMaxRead = 1 << 20;
// A control socket that ended without Exit: how often, and how far apart,
// to look for the spawner's death before calling it a dropped request.
constexpr int kLossChecks = 5;
constexpr unsigned long kLossCheckMs = 10;
// Reads per readiness event, so one busy child cannot hog a scheduler.
constexpr int kReadsPerEvent = 4;
// Reads below this size are copied into a heap binary; larger ones are sent
// as refcounted binaries without a copy.
constexpr ErlDrvSizeT kCopyBelow = 2048;

ErlDrvTermData a_oom_kill;
ErlDrvTermData a_memory_events;
ErlDrvTermData a_memory_event_keys[corral::frame::kMemoryEventKeys];
ErlDrvTermData a_data, a_stdout, a_stderr, a_started, a_exit_status, a_exit_signal, a_error,
    a_stdin_error;

// ---------------------------------------------------------------------------
// The spawner connection: one per VM, shared by every port, guarded by mu.
struct SpawnerConn {
  ErlDrvMutex* mu = nullptr;
  int req = -1;  // our end of the request socket
  pid_t pid = -1;
};
SpawnerConn g_spawner;

void close_spawner_locked() {
  if (g_spawner.req >= 0) close(g_spawner.req);
  g_spawner.req = -1;
  g_spawner.pid = -1;
}

// Starts the spawner. Returns 0 or -errno. Caller holds g_spawner.mu.
int start_spawner_locked(const std::string& path) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
  // Requests carry the whole environment; make room for large ones.
  int sz = static_cast<int>(corral::frame::kMaxFrame * 2);
  if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  // A spawner that stops reading (stopped, or behind) fills that buffer: a
  // send then fails with EAGAIN instead of blocking this scheduler thread,
  // and every other one waiting for g_spawner.mu; src/corral.erl waits in
  // the calling process and tries again. Only our end: the spawner's is its
  // own business.
  if (fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) < 0) {
    int err = errno;
    close(sv[0]);
    close(sv[1]);
    return -err;
  }

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
  // The VM holds fds without CLOEXEC (its own pipes, epoll sets, and any
  // port's fds): the spawner must not keep them open for its lifetime.
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  // Its own session: a ^C at the VM's terminal must not reach the spawner,
  // and the signal state of the scheduler thread that spawns it must not
  // leak into it.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char* argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>("3"), nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, path.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return -rc;
  }
  g_spawner.req = sv[0];
  g_spawner.pid = pid;
  return 0;
}

// Sends a Spawn frame with ctl attached, starting (or restarting) the
// spawner when needed. Returns 0 or -errno: -EAGAIN when the request socket
// is full.
int send_spawn(const std::string& spawner_path, const Frame& f, int ctl, pid_t& spawner) {
  erl_drv_mutex_lock(g_spawner.mu);
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (g_spawner.req < 0 && (rc = start_spawner_locked(spawner_path)) < 0) break;
    rc = corral::frame::send_frame(g_spawner.req, f, &ctl, 1);
    if (rc == 0) break;
    if (rc != -EPIPE && rc != -ECONNRESET && rc != -ENOTCONN) break;
    close_spawner_locked();  // it died: start a new one and try once more
  }
  spawner = g_spawner.pid;
  erl_drv_mutex_unlock(g_spawner.mu);
  return rc;
}

// Whether the spawner `pid` is gone: it never writes on the request socket,
// so a peek there sees EOF only once it has exited. A spawner that merely
// dropped one request (its fd table was full, say) must not be taken for
// dead: closing the request socket would make it kill every child.
bool spawner_gone_locked(pid_t pid) {
  if (g_spawner.req < 0 || g_spawner.pid != pid) return true;  // already replaced
  char c;
  ssize_t n = recv(g_spawner.req, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// ---------------------------------------------------------------------------
// Per-port state. The lifecycle lives in two enums (lifecycle.h); the
// remaining flags only mirror what we told the VM (select interest, busy).

// One of the child's output pipes.
struct OutPipe {
  int fd = -1;
  bool reading = false;     // ERL_DRV_READ is selected
  ErlDrvSizeT cap = 65536;  // pipe capacity
};

// The child's stdin pipe and the queue (the port's driver queue) in front.
struct InPipe {
  int fd = -1;
  Stdin state = Stdin::Open;
  bool writing = false;  // ERL_DRV_WRITE is selected
  bool busy = false;     // set_busy_port(1) is in force
};

// The terminal message, once known.
struct Outcome {
  enum Kind { kStatus, kSignal, kError } kind = kError;
  int value = 0;              // exit status or signal number
  std::string reason, stage;  // {error, {Reason, Stage}}
  std::string detail;         // {error, {Reason, {Stage, Detail}}} when set
  bool oom_kill = false;      // kSignal: {exit_signal, N, oom_kill}
};

struct Port {
  ErlDrvPort port;
  ErlDrvTermData term_port;
  Phase phase = Phase::Idle;
  int ctl = -1;  // open from Spawning until the spawner closes it
  InPipe in;
  OutPipe out, err;
  // Output is paused once unacknowledged bytes reach the window, and resumes
  // when acks bring them down to half of it: toggling the select on every
  // ack would cost an epoll_ctl per message.
  uint64_t window = 0;
  uint64_t unacked = 0;
  bool paused = false;
  pid_t spawner_pid = -1;            // the spawner this port's request went to
  int loss_checks = 0;               // JudgingLoss: timer rounds spent so far
  const char* loss_stage = "spawn";  // JudgingLoss: the stage to report
  int64_t os_pid = 0;
  std::string cgroup;                   // the child's leaf cgroup, when the spawner made one
  std::vector<std::string> v1_cgroups;  // its cgroup v1 leaves
  Outcome outcome;                      // valid from Draining on

  // stats
  uint64_t bytes_in = 0, bytes_out = 0, bytes_err = 0, read_count = 0, write_count = 0;
  ErlDrvTime started_at = 0, ended_at = 0;
};

// Every phase change goes through here. An illegal move is a bug: it is
// reported (the VM must not crash for it) and made all the same, so the
// port still reaches its terminal message.
void move_to(Port* p, Phase next) {
  if (!corral::driver::legal(p->phase, next))
    fprintf(stderr, "corral_drv: illegal phase change %s -> %s\r\n", corral::driver::name(p->phase),
            corral::driver::name(next));
  p->phase = next;
}

void move_to(Port* p, Stdin next) {
  if (p->in.state == next) return;
  if (!corral::driver::legal(p->in.state, next))
    fprintf(stderr, "corral_drv: illegal stdin change %s -> %s\r\n",
            corral::driver::name(p->in.state), corral::driver::name(next));
  p->in.state = next;
}

// ---------------------------------------------------------------------------
// Helpers.
ErlDrvEvent ev(int fd) { return reinterpret_cast<ErlDrvEvent>(static_cast<intptr_t>(fd)); }

// Our pipe ends carry no other status flag, so no F_GETFL first.
void set_nonblock(int fd) { fcntl(fd, F_SETFL, O_NONBLOCK); }

// Stops selecting fd and lets stop_select close it.
void release(Port* p, int& fd) {
  if (fd < 0) return;
  driver_select(p->port, ev(fd), ERL_DRV_USE | ERL_DRV_READ | ERL_DRV_WRITE, 0);
  fd = -1;
}

// Turns interest in one direction of fd on or off, without releasing it.
void select_mode(Port* p, int fd, int mode, bool on) {
  driver_select(p->port, ev(fd), on ? (mode | ERL_DRV_USE) : mode, on ? 1 : 0);
}

void update_reading(Port* p) {
  if (!p->paused && p->unacked >= p->window)
    p->paused = true;
  else if (p->paused && p->unacked <= p->window / 2)
    p->paused = false;
  bool want = !p->paused;
  for (OutPipe* o : {&p->out, &p->err}) {
    if (o->fd >= 0 && want != o->reading) {
      select_mode(p, o->fd, ERL_DRV_READ, want);
      o->reading = want;
    }
  }
}

void send_tuple2(Port* p, ErlDrvTermData tag, ErlDrvTermData spec_type, ErlDrvTermData value) {
  ErlDrvTermData spec[] = {ERL_DRV_PORT,  p->term_port,
                           ERL_DRV_ATOM,  tag,
                           spec_type,     value,
                           ERL_DRV_TUPLE, 2,
                           ERL_DRV_TUPLE, 2};
  erl_drv_output_term(p->term_port, spec, sizeof spec / sizeof spec[0]);
}

void send_error(Port* p, const char* reason, const char* stage, const std::string& detail) {
  if (!detail.empty()) {
    ErlDrvTermData spec[] = {ERL_DRV_PORT,
                             p->term_port,
                             ERL_DRV_ATOM,
                             a_error,
                             ERL_DRV_ATOM,
                             driver_mk_atom(const_cast<char*>(reason)),
                             ERL_DRV_ATOM,
                             driver_mk_atom(const_cast<char*>(stage)),
                             ERL_DRV_BUF2BINARY,
                             reinterpret_cast<ErlDrvTermData>(detail.data()),
                             detail.size(),
                             ERL_DRV_TUPLE,
                             2,
                             ERL_DRV_TUPLE,
                             2,
                             ERL_DRV_TUPLE,
                             2,
                             ERL_DRV_TUPLE,
                             2};
    erl_drv_output_term(p->term_port, spec, sizeof spec / sizeof spec[0]);
    return;
  }
  ErlDrvTermData spec[] = {ERL_DRV_PORT,  p->term_port,
                           ERL_DRV_ATOM,  a_error,
                           ERL_DRV_ATOM,  driver_mk_atom(const_cast<char*>(reason)),
                           ERL_DRV_ATOM,  driver_mk_atom(const_cast<char*>(stage)),
                           ERL_DRV_TUPLE, 2,
                           ERL_DRV_TUPLE, 2,
                           ERL_DRV_TUPLE, 2};
  erl_drv_output_term(p->term_port, spec, sizeof spec / sizeof spec[0]);
}

// Draining -> Terminated, once every byte of output has been delivered:
// sends the terminal message and closes the port. Returns true when it did:
// the caller must not touch p after that.
bool maybe_finish(Port* p) {
  if (p->phase != Phase::Draining || p->out.fd >= 0 || p->err.fd >= 0) return false;
  move_to(p, Phase::Terminated);
  p->ended_at = erl_drv_monotonic_time(ERL_DRV_MSEC);
  const Outcome& o = p->outcome;
  switch (o.kind) {
    case Outcome::kStatus:
      send_tuple2(p, a_exit_status, ERL_DRV_INT, static_cast<ErlDrvTermData>(o.value));
      break;
    case Outcome::kSignal:
      if (o.oom_kill) {
        ErlDrvTermData spec[] = {ERL_DRV_PORT,  p->term_port,
                                 ERL_DRV_ATOM,  a_exit_signal,
                                 ERL_DRV_INT,   static_cast<ErlDrvTermData>(o.value),
                                 ERL_DRV_ATOM,  a_oom_kill,
                                 ERL_DRV_TUPLE, 3,
                                 ERL_DRV_TUPLE, 2};
        erl_drv_output_term(p->term_port, spec, sizeof spec / sizeof spec[0]);
        break;
      }
      send_tuple2(p, a_exit_signal, ERL_DRV_INT, static_cast<ErlDrvTermData>(o.value));
      break;
    case Outcome::kError:
      send_error(p, o.reason.c_str(), o.stage.c_str(), o.detail);
      break;
  }
  driver_exit(p->port, 0);
  return true;
}

// -> Draining with an {error, {Reason, Stage}} outcome.
void settle_error(Port* p, std::string reason, std::string stage, std::string detail = {}) {
  move_to(p, Phase::Draining);
  p->outcome.kind = Outcome::kError;
  p->outcome.reason = std::move(reason);
  p->outcome.stage = std::move(stage);
  p->outcome.detail = std::move(detail);
}

void send_to_spawner(Port* p, const Frame& f) {
  if (p->ctl >= 0) corral::frame::send_frame(p->ctl, f);
}

// Any stdin state -> Closed: the pipe (if any) is released.
void close_stdin_now(Port* p) {
  if (p->in.fd >= 0) {
    p->in.writing = false;
    release(p, p->in.fd);
  }
  move_to(p, Stdin::Closed);
}

// Writes as much of the queue as the pipe takes.
void flush_stdin(Port* p) {
  if (p->in.fd < 0) return;
  for (;;) {
    int vlen = 0;
    SysIOVec* iov = driver_peekq(p->port, &vlen);
    if (!iov || vlen == 0) break;
    ssize_t n = writev(p->in.fd, reinterpret_cast<iovec*>(iov), std::min(vlen, IOV_MAX));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      // EPIPE and friends: the child closed its stdin. Drop what is queued;
      // the owner learns it once.
      int e = errno;
      driver_deq(p->port, driver_sizeq(p->port));
      close_stdin_now(p);
      send_tuple2(p, a_stdin_error, ERL_DRV_ATOM, driver_mk_atom(erl_errno_id(e)));
      break;
    }
    p->bytes_in += static_cast<uint64_t>(n);
    p->write_count++;
    driver_deq(p->port, static_cast<ErlDrvSizeT>(n));
  }
  ErlDrvSizeT left = driver_sizeq(p->port);
  if (p->in.busy && left < kLowWater) {
    p->in.busy = false;
    set_busy_port(p->port, 0);
  }
  if (p->in.fd < 0) return;
  if (left == 0 && p->in.state == Stdin::Closing) {
    close_stdin_now(p);
    return;
  }
  bool want = left > 0;
  if (want != p->in.writing) {
    select_mode(p, p->in.fd, ERL_DRV_WRITE, want);
    p->in.writing = want;
  }
}

// Sends one read as {Port, {data, Which, Bin}}: small reads copied into a
// heap binary, large ones as a refcounted binary without a copy.
void send_data(Port* p, ErlDrvTermData which, ErlDrvBinary* bin, size_t len) {
  ErlDrvTermData spec[14] = {ERL_DRV_PORT, p->term_port, ERL_DRV_ATOM, a_data, ERL_DRV_ATOM, which};
  int n = 6;
  if (len < kCopyBelow) {
    spec[n++] = ERL_DRV_BUF2BINARY;
    spec[n++] = reinterpret_cast<ErlDrvTermData>(bin->orig_bytes);
    spec[n++] = len;
  } else {
    spec[n++] = ERL_DRV_BINARY;
    spec[n++] = reinterpret_cast<ErlDrvTermData>(bin);
    spec[n++] = len;
    spec[n++] = 0;  // offset
  }
  for (ErlDrvTermData t : {ERL_DRV_TUPLE, ErlDrvTermData{3}, ERL_DRV_TUPLE, ErlDrvTermData{2}})
    spec[n++] = t;
  erl_drv_output_term(p->term_port, spec, n);
}

// Reads what the pipe holds, up to the credit, in at most kReadsPerEvent
// reads. On EOF it releases the fd and may finish the port: returns true
// then, and the caller must not touch p again.
bool read_pipe(Port* p, OutPipe& o, ErlDrvTermData which) {
  for (int i = 0; i < kReadsPerEvent; i++) {
    if (p->unacked >= p->window) break;
    ErlDrvSizeT want = std::min<uint64_t>(std::min(o.cap, kMaxRead), p->window - p->unacked);
    ErlDrvBinary* bin = driver_alloc_binary(want);
    if (!bin) break;
    ssize_t n;
    do {
      n = read(o.fd, bin->orig_bytes, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
      driver_free_binary(bin);
      break;
    }
    if (n <= 0) {  // EOF, or an error that ends this stream all the same
      driver_free_binary(bin);
      o.reading = false;
      release(p, o.fd);
      return maybe_finish(p);
    }
    size_t len = static_cast<size_t>(n);
    p->read_count++;
    (which == a_stdout ? p->bytes_out : p->bytes_err) += len;
    p->unacked += len;
    if (len >= kCopyBelow && len < want / 2) {
      ErlDrvBinary* smaller = driver_realloc_binary(bin, static_cast<ErlDrvSizeT>(len));
      if (smaller) bin = smaller;
    }
    send_data(p, which, bin, len);
    driver_free_binary(bin);
    if (len < want) break;  // the pipe is empty now
  }
  update_reading(p);
  return false;
}

// Spawning -> Running: adopt the pipes of the Fds frame.
void adopt_fds(Port* p, const FdsFrame& f, std::vector<int>& fds) {
  size_t i = 0;
  auto take = [&](uint32_t bit) -> int {
    if (!(f.pipes & bit) || i >= fds.size()) return -1;
    return fds[i++];
  };
  p->in.fd = take(corral::frame::kFdStdin);
  p->out.fd = take(corral::frame::kFdStdout);
  p->err.fd = take(corral::frame::kFdStderr);
  for (; i < fds.size(); i++) close(fds[i]);  // anything unexpected
  fds.clear();
  move_to(p, Phase::Running);
  p->os_pid = f.os_pid;
  p->cgroup = f.leaf;
  p->v1_cgroups = f.v1_leaves;
  for (int fd : {p->in.fd, p->out.fd, p->err.fd})
    if (fd >= 0) set_nonblock(fd);
  for (OutPipe* o : {&p->out, &p->err})
    if (o->fd >= 0) o->cap = std::max(4096, fcntl(o->fd, F_GETPIPE_SZ));
  send_tuple2(p, a_started, ERL_DRV_INT, static_cast<ErlDrvTermData>(p->os_pid));
  if (p->in.fd < 0)
    move_to(p, Stdin::Closed);  // no stdin pipe: nobody reads what is queued
  else
    flush_stdin(p);  // what was queued meanwhile; closes it if so asked
  update_reading(p);
}

// -> Draining on the spawner's Exit frame.
void on_exit_frame(Port* p, int status, bool oom_kill) {
  if (p->phase == Phase::FdsLost) {
    settle_error(p, "emfile", "spawn");
  } else {
    move_to(p, Phase::Draining);
    p->outcome.kind = WIFSIGNALED(status) ? Outcome::kSignal : Outcome::kStatus;
    p->outcome.value = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
    p->outcome.oom_kill = oom_kill && WIFSIGNALED(status);
  }
  // The spawner sends Exit once the group is gone and the leaf is empty:
  // what is left in the pipes is bounded by their capacity. Deliver it
  // whatever the credit, so that an owner that holds unacknowledged bytes
  // still gets the terminal message. (Not on a lost spawner: without a
  // cgroup an escapee could hold the pipe and write on forever.)
  p->window = UINT64_MAX / 2;
  update_reading(p);
}

// JudgingLoss -> Draining, once it can tell whether the spawner behind the
// ended control socket is dead. Returns false when it cannot tell yet: a
// dying process releases its sockets in reverse fd order, so the control
// socket's EOF can come a moment before the request socket's; the caller
// asks again shortly. With `final` it decides all the same.
bool judge_spawner_loss(Port* p, bool final) {
  erl_drv_mutex_lock(g_spawner.mu);
  bool gone = spawner_gone_locked(p->spawner_pid);
  if (!gone && !final) {
    erl_drv_mutex_unlock(g_spawner.mu);
    return false;
  }
  if (gone && g_spawner.pid == p->spawner_pid)
    close_spawner_locked();  // the next spawn starts a new one
  erl_drv_mutex_unlock(g_spawner.mu);
  settle_error(p, gone ? "spawner_died" : "spawner_dropped", p->loss_stage);
  return true;
}

// Spawning, Running or FdsLost -> JudgingLoss: the control socket ended
// before the Exit frame. If the spawner died, its children got SIGKILL from
// PDEATHSIG; kill the group and the leaf cgroup too, for the descendants
// that PDEATHSIG does not reach. (The next spawner removes the dead one's
// cgroup directories.) If it merely dropped us, the child is killed all the
// same: nobody could report its exit.
void on_spawner_lost(Port* p) {
  p->loss_stage = p->phase == Phase::Running ? "running" : "spawn";
  move_to(p, Phase::JudgingLoss);
  (void)corral::kill_tree(static_cast<pid_t>(p->os_pid), p->cgroup);
  for (const std::string& v1 : p->v1_cgroups) (void)corral::kill_cgroup(v1);
  if (!judge_spawner_loss(p, false)) {
    p->loss_checks = 1;
    driver_set_timer(p->port, kLossCheckMs);
  }
}

// {Port, {memory_events, #{Key => Count}}}: the counts the spawner read, one
// entry per key of the subscription.
void send_memory_events(Port* p, const EventsFrame& f) {
  constexpr size_t kKeys = corral::frame::kMemoryEventKeys;
  ErlDrvTermData spec[4 + 4 * kKeys + 2 + 4];
  ErlDrvSInt64 counts[kKeys];
  size_t n = 0, pairs = 0;
  spec[n++] = ERL_DRV_PORT;
  spec[n++] = p->term_port;
  spec[n++] = ERL_DRV_ATOM;
  spec[n++] = a_memory_events;
  for (size_t i = 0; i < kKeys; i++) {
    if (!(f.keys & (1u << i))) continue;
    counts[pairs] = f.counts[i];
    spec[n++] = ERL_DRV_ATOM;
    spec[n++] = a_memory_event_keys[i];
    spec[n++] = ERL_DRV_INT64;
    spec[n++] = reinterpret_cast<ErlDrvTermData>(&counts[pairs]);
    pairs++;
  }
  spec[n++] = ERL_DRV_MAP;
  spec[n++] = static_cast<ErlDrvTermData>(pairs);
  spec[n++] = ERL_DRV_TUPLE;
  spec[n++] = 2;
  spec[n++] = ERL_DRV_TUPLE;
  spec[n++] = 2;
  erl_drv_output_term(p->term_port, spec, static_cast<int>(n));
}

void read_ctl(Port* p) {
  for (;;) {
    Frame f;
    std::vector<int> fds;
    int rc = corral::frame::recv_frame(p->ctl, f, fds);
    if (rc == -EAGAIN || rc == -EINTR) return;
    // The spawner closed its end with our Signal frames still unread: the
    // reset is reported once, ahead of the frames it sent before closing
    // (the Exit among them). Read on.
    if (rc == -ECONNRESET) continue;
    if (rc == -EBADMSG) {
      // Spawning -> FdsLost. Most likely our fd table is full and the kernel
      // dropped the pipes of an Fds frame: the child runs, but we cannot
      // read it. Stop it; its Exit ends the port with {error, {emfile, spawn}}.
      if (p->phase == Phase::Spawning) {
        move_to(p, Phase::FdsLost);
        send_to_spawner(p, StopFrame{});
      }
      continue;
    }
    if (rc <= 0) {  // EOF or a broken socket
      for (int fd : fds) close(fd);
      release(p, p->ctl);
      if (p->phase != Phase::Draining) on_spawner_lost(p);
      maybe_finish(p);
      return;
    }
    if (auto* fr = std::get_if<FdsFrame>(&f)) {
      if (p->phase == Phase::Spawning) adopt_fds(p, *fr, fds);
    } else if (auto* ex = std::get_if<ExitFrame>(&f)) {
      if (p->phase != Phase::Draining) {
        on_exit_frame(p, ex->wait_status, ex->oom_kill);
        // The group is gone: its pipes hold their last bytes and then EOF.
        // Read them now rather than after another trip through the poll set.
        if (p->out.fd >= 0 && read_pipe(p, p->out, a_stdout)) return;
        if (p->err.fd >= 0 && read_pipe(p, p->err, a_stderr)) return;
      }
    } else if (auto* events = std::get_if<EventsFrame>(&f)) {
      // Only while the child runs: the spawner sends its last counts before
      // Exit, so they precede the terminal message.
      if (p->phase == Phase::Running) send_memory_events(p, *events);
    } else if (auto* er = std::get_if<ErrorFrame>(&f)) {
      if (p->phase != Phase::Draining)
        settle_error(p, erl_errno_id(er->err), er->stage.empty() ? "spawn" : er->stage, er->detail);
    }
    for (int fd : fds) close(fd);
    if (maybe_finish(p)) return;
  }
}

ErlDrvSSizeT reply(char** rbuf, const void* data, size_t len) {
  ErlDrvBinary* b = driver_alloc_binary(len);
  if (!b) return -1;
  if (len) std::memcpy(b->orig_bytes, data, len);
  *rbuf = reinterpret_cast<char*>(b);
  return static_cast<ErlDrvSSizeT>(len);
}

ErlDrvSSizeT reply_errno(char** rbuf, int e) {
  std::string s(1, '\1');
  s += erl_errno_id(e);
  return reply(rbuf, s.data(), s.size());
}

// Idle -> Spawning, with c parsed from a SPAWN payload (control.h).
ErlDrvSSizeT op_spawn(Port* p, const Control& c, char** rbuf) {
  std::string path(c.path);
  uint64_t window = c.num;
  // Built in place: the term can be large.
  Frame frame{std::in_place_type<SpawnFrame>};
  SpawnFrame& f = std::get<SpawnFrame>(frame);
  f.term.assign(c.term);
  // The child starts in the VM's working directory, as with System.cmd/3,
  // and a relative cd is taken from there: getcwd here is one system call,
  // where file:get_cwd/0 would be a trip through a dirty I/O scheduler. A
  // cwd getcwd cannot name (removed, or too long) is reached through /proc.
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd) || cwd[0] != '/')
    snprintf(cwd, sizeof cwd, "/proc/%d/cwd", static_cast<int>(getpid()));
  f.cwd = cwd;
  if (sizeof(corral::frame::Header) + f.term.size() + f.cwd.size() > corral::frame::kMaxFrame)
    return reply_errno(rbuf, E2BIG);

  int sv[2];
  // Non-blocking on both ends: the spawner wants its end so too.
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
    return reply_errno(rbuf, errno);
  int rc = send_spawn(path, frame, sv[1], p->spawner_pid);
  close(sv[1]);
  if (rc < 0) {
    close(sv[0]);
    return reply_errno(rbuf, -rc);
  }
  move_to(p, Phase::Spawning);
  p->ctl = sv[0];
  p->window = window;
  p->started_at = erl_drv_monotonic_time(ERL_DRV_MSEC);
  driver_select(p->port, ev(p->ctl), ERL_DRV_READ | ERL_DRV_USE, 1);
  return reply(rbuf, "\0", 1);
}

// The reply is a map in the external term format: the layout is decided
// here only, and corral:stats/1 passes the map on as it is (its stats()
// type documents the keys).
ErlDrvSSizeT op_stats(Port* p, char** rbuf) {
  ErlDrvTime end = p->ended_at ? p->ended_at : erl_drv_monotonic_time(ERL_DRV_MSEC);
  const struct {
    const char* key;
    uint64_t value;
  } stats[] = {
      {"bytes_in", p->bytes_in},
      {"bytes_out", p->bytes_out},
      {"bytes_err", p->bytes_err},
      {"read_count", p->read_count},
      {"write_count", p->write_count},
      {"duration_ms", p->started_at ? static_cast<uint64_t>(end - p->started_at) : 0},
      {"unacked", p->unacked},
      {"stdin_queued", driver_sizeq(p->port)},
  };
  // The first pass (no buffer) only measures.
  auto encode = [&](char* buf) {
    int i = 0;
    ei_encode_version(buf, &i);
    ei_encode_map_header(buf, &i, static_cast<int>(std::size(stats)));
    for (const auto& s : stats) {
      ei_encode_atom(buf, &i, s.key);
      ei_encode_ulonglong(buf, &i, s.value);
    }
    return i;
  };
  ErlDrvBinary* b = driver_alloc_binary(static_cast<ErlDrvSizeT>(encode(nullptr)));
  if (!b) return -1;
  int len = encode(b->orig_bytes);
  *rbuf = reinterpret_cast<char*>(b);
  return len;
}

// ---------------------------------------------------------------------------
// Callbacks.
int drv_init() {
  g_spawner.mu = erl_drv_mutex_create(const_cast<char*>("corral_spawner"));
  if (!g_spawner.mu) return -1;
  a_data = driver_mk_atom(const_cast<char*>("data"));
  a_stdout = driver_mk_atom(const_cast<char*>("stdout"));
  a_stderr = driver_mk_atom(const_cast<char*>("stderr"));
  a_started = driver_mk_atom(const_cast<char*>("started"));
  a_exit_status = driver_mk_atom(const_cast<char*>("exit_status"));
  a_exit_signal = driver_mk_atom(const_cast<char*>("exit_signal"));
  a_error = driver_mk_atom(const_cast<char*>("error"));
  a_oom_kill = driver_mk_atom(const_cast<char*>("oom_kill"));
  a_stdin_error = driver_mk_atom(const_cast<char*>("stdin_error"));
  a_memory_events = driver_mk_atom(const_cast<char*>("memory_events"));
  for (size_t i = 0; i < corral::frame::kMemoryEventKeys; i++)
    a_memory_event_keys[i] = driver_mk_atom(const_cast<char*>(corral::frame::kMemoryEventNames[i]));
  return 0;
}

void drv_finish() {
  // The driver is being unloaded (only when no port is open): let the
  // spawner go. Its EOF on the request socket makes it exit.
  if (!g_spawner.mu) return;
  erl_drv_mutex_lock(g_spawner.mu);
  close_spawner_locked();
  erl_drv_mutex_unlock(g_spawner.mu);
  erl_drv_mutex_destroy(g_spawner.mu);
  g_spawner.mu = nullptr;
}

ErlDrvData drv_start(ErlDrvPort port, char*) {
  Port* p = new (std::nothrow) Port();
  if (!p) return ERL_DRV_ERROR_GENERAL;
  p->port = port;
  p->term_port = driver_mk_port(port);
  // erl_ddll unloads a driver when the process that loaded it exits; lock it
  // in for the life of the VM, like a statically linked driver.
  static bool locked = false;
  if (!__atomic_exchange_n(&locked, true, __ATOMIC_ACQ_REL)) driver_lock_driver(port);
  set_port_control_flags(port, PORT_CONTROL_FLAG_BINARY);
  return reinterpret_cast<ErlDrvData>(p);
}

void drv_stop(ErlDrvData d) {
  Port* p = reinterpret_cast<Port*>(d);
  driver_cancel_timer(p->port);
  // Closing ctl tells the spawner the owner is gone; it escalates.
  release(p, p->ctl);
  release(p, p->in.fd);
  release(p, p->out.fd);
  release(p, p->err.fd);
  delete p;
}

void drv_outputv(ErlDrvData d, ErlIOVec* iov) {
  Port* p = reinterpret_cast<Port*>(d);
  if (iov->size == 0) return;
  // Closing, Closed, or the port is going: nobody reads these bytes any more.
  if (p->in.state != Stdin::Open || p->phase == Phase::Terminated) return;
  driver_enqv(p->port, iov, 0);
  if (!p->in.busy && driver_sizeq(p->port) > kHighWater) {
    p->in.busy = true;
    set_busy_port(p->port, 1);
  }
  flush_stdin(p);  // a no-op until the pipe is here
}

void drv_ready_input(ErlDrvData d, ErlDrvEvent e) {
  Port* p = reinterpret_cast<Port*>(d);
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(e));
  if (fd == p->ctl)
    read_ctl(p);
  else if (fd == p->out.fd)
    read_pipe(p, p->out, a_stdout);
  else if (fd == p->err.fd)
    read_pipe(p, p->err, a_stderr);
}

void drv_ready_output(ErlDrvData d, ErlDrvEvent e) {
  Port* p = reinterpret_cast<Port*>(d);
  if (static_cast<int>(reinterpret_cast<intptr_t>(e)) == p->in.fd) flush_stdin(p);
}

void drv_flush(ErlDrvData d) {
  // The port is closing with stdin bytes queued: nobody waits for them.
  Port* p = reinterpret_cast<Port*>(d);
  driver_deq(p->port, driver_sizeq(p->port));
}

ErlDrvSSizeT drv_control(ErlDrvData d, unsigned cmd, char* buf, ErlDrvSizeT len, char** rbuf,
                         ErlDrvSizeT) {
  Port* p = reinterpret_cast<Port*>(d);
  // A second SPAWN is EALREADY whatever its payload.
  if (cmd == op::OP_SPAWN && p->phase != Phase::Idle) return reply_errno(rbuf, EALREADY);
  Control c;
  if (int e = corral::driver::parse_control(cmd, std::string_view(buf, len), c); e != 0)
    return reply_errno(rbuf, e);
  switch (cmd) {
    case op::OP_SPAWN:
      return op_spawn(p, c, rbuf);
    case op::OP_ACK:
      p->unacked -= std::min(c.num, p->unacked);
      update_reading(p);
      return reply(rbuf, "", 0);
    case op::OP_SET_WINDOW:
      p->window = c.num;
      update_reading(p);
      return reply(rbuf, "", 0);
    case op::OP_SIGNAL:
      if (!corral::driver::signalable(p->phase)) return reply_errno(rbuf, ESRCH);
      send_to_spawner(p, SignalFrame{c.sig});
      return reply(rbuf, "", 0);
    case op::OP_STOP:
      if (!corral::driver::signalable(p->phase)) return reply_errno(rbuf, ESRCH);
      send_to_spawner(p, StopFrame{});
      return reply(rbuf, "", 0);
    case op::OP_CLOSE_STDIN:
      // Open -> Closing; Closing -> Closed at once when the pipe is here
      // and nothing is queued (otherwise flush_stdin closes it).
      if (p->in.state == Stdin::Open) move_to(p, Stdin::Closing);
      if (p->in.fd >= 0 && driver_sizeq(p->port) == 0) close_stdin_now(p);
      return reply(rbuf, "", 0);
    case op::OP_STATS:
      return op_stats(p, rbuf);
    case op::OP_OSPID: {
      int64_t pid = p->os_pid;
      return reply(rbuf, &pid, sizeof pid);
    }
    case op::OP_CGROUPS: {
      // The child's leaves as the Fds frame gave them: the v2 one (may be
      // empty), then each v1 one, NUL-separated. Empty before Fds.
      std::string dirs = p->cgroup;
      for (const std::string& leaf : p->v1_cgroups) dirs += '\0' + leaf;
      return reply(rbuf, dirs.data(), dirs.size());
    }
    case op::OP_CGROUP_V1: {
      // The v1<->v2 table and its conversions; needs no child (src/corral_cgroup.erl).
      std::string r = corral::cgroup_table::serve(c.term);
      return reply(rbuf, r.data(), r.size());
    }
    default:
      return reply_errno(rbuf, EINVAL);
  }
}

// JudgingLoss: look again whether the spawner is gone.
void drv_timeout(ErlDrvData d) {
  Port* p = reinterpret_cast<Port*>(d);
  if (p->phase != Phase::JudgingLoss) return;
  bool final = ++p->loss_checks > kLossChecks;
  if (!judge_spawner_loss(p, final)) {
    driver_set_timer(p->port, kLossCheckMs);
    return;
  }
  maybe_finish(p);
}

void drv_stop_select(ErlDrvEvent e, void*) {
  close(static_cast<int>(reinterpret_cast<intptr_t>(e)));
}

ErlDrvEntry g_entry = {
    drv_init,
    drv_start,
    drv_stop,
    nullptr,  // output: we use outputv
    drv_ready_input,
    drv_ready_output,
    const_cast<char*>("corral_drv"),
    drv_finish,
    nullptr,  // handle
    drv_control,
    drv_timeout,
    drv_outputv,
    nullptr,  // ready_async
    drv_flush,
    nullptr,  // call
    nullptr,  // unused_event_callback
    static_cast<int>(ERL_DRV_EXTENDED_MARKER),
    ERL_DRV_EXTENDED_MAJOR_VERSION,
    ERL_DRV_EXTENDED_MINOR_VERSION,
    ERL_DRV_FLAG_USE_PORT_LOCKING,
    nullptr,  // handle2
    nullptr,  // process_exit
    drv_stop_select,
    nullptr,  // emergency_close
};

}  // namespace

extern "C" DRIVER_INIT(corral_drv) { return &g_entry; }
