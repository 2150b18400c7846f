#include "child_record.h"

#include <csignal>

namespace corral::spawner {

void signal_leader(const ChildRecord& c, int sig) {
  // A child without a held pidfd (see ExitWatcher) gets one opened for this.
  if (c.pidfd && pidfd_send_signal(c.pidfd.get(), sig) == 0) return;
  unique_fd pidfd(c.pidfd ? -1 : pidfd_open(c.pid));
  if (pidfd && pidfd_send_signal(pidfd.get(), sig) == 0) return;
  (void)kill(c.pid, sig);
}

ChildRecord& ChildTable::add(std::unique_ptr<ChildRecord> c) {
  c->state = ChildState::Launching;
  launching_++;
  ChildRecord* rec = c.get();
  map_[rec->pid] = std::move(c);
  // cppcheck-suppress returnReference ; *rec is the record the map now owns
  return *rec;
}

void ChildTable::started(ChildRecord& c) {
  if (c.state != ChildState::Launching) return;
  c.state = ChildState::Running;
  launching_--;
}

void ChildTable::erase(pid_t pid) {
  auto it = map_.find(pid);
  if (it == map_.end()) return;
  if (it->second->state == ChildState::Launching) launching_--;
  map_.erase(it);
}

}  // namespace corral::spawner
