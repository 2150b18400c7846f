// Test support: a blocking start of one child, on top of start_child.
#pragma once

#include "child.h"

namespace corral::spawner {

struct SpawnResult {
  bool ok = false;
  Child child;             // when ok
  int error = 0;           // errno, when !ok
  const char* stage = "";  // setup stage that failed, when !ok
};

// start_child, then waits for the exec-status pipe. Returns once the child
// has exec'd (ok) or failed before exec (the failed child is reaped here).
SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx = {});

// A pid that is surely dead: that of a process started (through Boost.Process)
// and reaped here. -1 if /bin/true could not be run.
pid_t reaped_pid();

}  // namespace corral::spawner
