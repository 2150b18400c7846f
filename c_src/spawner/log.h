// The spawner's log: its stderr, which is the VM's. Only what an operator
// must act on goes there; an owner that goes away mid-spawn is normal.
#pragma once

namespace corral::spawner {

// One line "corral_spawner[pid]: ..." on stderr.
void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// For a condition that may repeat with every child (a cgroup that cannot be
// made, a socket that cannot be watched): only the first occurrence is
// logged, with a note that later ones are not, so that the VM's stderr gets
// one line to act on rather than one per spawn.
class LogOnce {
 public:
  void operator()(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  bool said() const { return said_; }

 private:
  bool said_ = false;
};

// An error from sending to a control socket that only says its owner is
// gone (EPIPE, ECONNRESET): nothing to log. err is -errno or errno.
bool owner_gone_error(int err);

}  // namespace corral::spawner
