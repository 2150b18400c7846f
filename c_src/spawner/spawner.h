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

#include "child.h"
#include "frame.h"

namespace corral::spawner {

class Spawner {
 public:
  // request: the request socket (SOCK_SEQPACKET) from the driver.
  explicit Spawner(unique_fd request);
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Blocks SIGCHLD, opens the signalfd and the epoll set and becomes a child
  // subreaper. Returns 0 or -errno.
  int init();

  // Serves until the request socket reaches EOF, then SIGKILLs every child's
  // process group and returns 0. Returns -errno if epoll itself fails.
  int run();

 private:
  using Clock = std::chrono::steady_clock;
  using Deadlines = std::multimap<Clock::time_point, pid_t>;

  enum class State { Running, Stopping, Draining };

  struct Tracked {
    pid_t pid = -1;  // also the process group id
    unique_fd pidfd;
    unique_fd ctl;  // empty once the owner is gone
    int stop_signal = 15;
    int64_t kill_timeout_ms = 0;
    State state = State::Running;
    int status = 0;  // raw wait status, once reaped
    bool has_deadline = false;
    Deadlines::iterator deadline;
    Clock::time_point drain_started;
  };

  void on_request();
  void handle_spawn(frame::Frame& f, std::vector<int>& fds);
  void on_ctl(pid_t pid);
  void on_sigchld();
  void reap();
  void check_draining();
  void fire_deadlines();
  int epoll_timeout() const;

  void escalate(Tracked& t);
  void signal_leader(Tracked& t, int sig);
  void owner_gone(Tracked& t);
  void leader_reaped(Tracked& t, int status);
  void finish(pid_t pid);
  void clear_deadline(Tracked& t);
  void kill_everything();

  unique_fd request_;
  unique_fd epoll_;
  unique_fd sigfd_;
  std::unordered_map<pid_t, std::unique_ptr<Tracked>> children_;
  Deadlines deadlines_;
  std::unordered_set<pid_t> draining_;
  bool done_ = false;
};

}  // namespace corral::spawner
