// One record per child of the spawner, from its clone to its Exit frame, and
// the table that holds them by pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "cgroup.h"
#include "cgroup_events.h"
#include "child.h"
#include "fd.h"

namespace corral::spawner {

using Clock = std::chrono::steady_clock;

// Children between clone and exec at once: each holds a stack and a few fds
// here. Requests wait in their socket above this. The tests lower it through
// CORRAL_SPAWNER_MAX_PENDING to drive the pause and the resume.
constexpr size_t kMaxPending = 64;
using Deadlines = std::multimap<Clock::time_point, pid_t>;

// Where a child is in its life. The transitions:
//
//   Launching --exec'd--------------------> Running (Fds sent to the owner,
//                                           or held: see `held`)
//   Launching --failed before exec--------> (removed; Error sent)
//   Running   --Stop, owner gone----------> Stopping (stop signal sent,
//                                           SIGKILL at the deadline)
//   Running   --leader reaped-------------> Draining
//   Stopping  --leader reaped-------------> Draining
//   Draining  --group and leaf empty,
//               or kDrainLimit passed-----> (removed; Exit sent)
//
// A leader reaped while Launching (it exec'd and exited before its exec
// status was read) keeps its status in `exited`/`status` and goes from
// Running to Draining as soon as it has been reported.
enum class ChildState { Launching, Running, Stopping, Draining };

struct ChildRecord {
  pid_t pid = -1;  // also the process group id
  ChildState state = ChildState::Launching;
  unique_fd ctl;  // the owner's control socket; empty once the owner is gone
  Launch launch;  // Launching only: the exec-status pipe and the child's memory
  // The start report held back (SpawnSpec::report_delay_ms; the Spawner's
  // held_reports_ lists the children that have one): the pipes it will
  // carry, and when it goes at the latest. It always goes before any other
  // frame for this child (Events, Exit).
  int report_delay_ms = 0;
  Child held;
  Clock::time_point report_due;
  cgroup::Dir leaf;          // empty when cgroups are not used
  bool leaf_killed = false;  // cgroup.kill'ed: never to be reused
  // Configured children (a CgroupSpec): the leaf carries settings or lies
  // outside the pool's base, so it is never pooled; and the v1 leaves.
  bool leaf_private = false;
  std::vector<cgroup::Dir> v1_leaves;
  // The owner's memory_events subscription; empty without one.
  events::Watch memory_events;
  int stop_signal = 15;
  int64_t kill_timeout_ms = 0;
  // Readable once the leader exits, until it is reaped: the exit found in
  // O(1). Without one (fds are short) SIGCHLD means a scan of all.
  unique_fd pidfd;
  bool unwatched = false;  // started without a pidfd: counted by the ExitWatcher
  bool exited = false;     // the leader is reaped (status is its wait status)
  // Our pid came back from a clone: the kernel hands a pid out again only
  // once no process has it as its pid, process group or session, so our
  // group is empty and its id another's. Never signalled by pid again.
  bool pid_reused = false;
  int status = 0;
  bool has_deadline = false;  // Stopping: its SIGKILL is due at *deadline
  Deadlines::iterator deadline;
  Clock::time_point drain_started;
};

// Sends sig to the leader (not its group). Only before it is reaped: as its
// unreaped parent we pin its pid, so neither the pidfd nor kill() can reach
// another process.
void signal_leader(const ChildRecord& c, int sig);

class ChildTable {
 public:
  ChildRecord* find(pid_t pid) {
    auto it = map_.find(pid);
    return it == map_.end() ? nullptr : it->second.get();
  }
  const ChildRecord* find(pid_t pid) const {
    auto it = map_.find(pid);
    return it == map_.end() ? nullptr : it->second.get();
  }
  // Adds a Launching record.
  ChildRecord& add(std::unique_ptr<ChildRecord> c);
  // Launching -> Running.
  void started(ChildRecord& c);
  void erase(pid_t pid);
  // Children between clone and exec, and those past it.
  size_t launching() const { return launching_; }
  size_t started_count() const { return map_.size() - launching_; }
  template <typename F>
  void for_each(F f) {
    for (auto& [pid, c] : map_) f(*c);
  }
  // Destroys every record; a Launching one waits for its child to be off our
  // memory (see Launch).
  void clear() {
    map_.clear();
    launching_ = 0;
  }

 private:
  std::unordered_map<pid_t, std::unique_ptr<ChildRecord>> map_;
  size_t launching_ = 0;
};

}  // namespace corral::spawner
