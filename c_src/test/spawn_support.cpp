#include "spawn_support.h"

#include <sys/wait.h>

#include <boost/process/child.hpp>
#include <boost/process/exception.hpp>
#include <cerrno>

namespace corral::spawner {

SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx) {
  SpawnResult res;
  Launch l;
  SpawnSpec copy = spec;
  if (int rc = start_child(std::move(copy), ctx, l, res.stage); rc < 0) {
    res.error = -rc;
    return res;
  }
  if (l.wait() == Launch::Result::Failed) {
    while (waitpid(l.pid(), nullptr, 0) < 0 && errno == EINTR) {
    }
    res.error = l.error();
    res.stage = l.stage();
    return res;
  }
  res.ok = true;
  res.child = std::move(l.child());
  return res;
}

pid_t reaped_pid() {
  try {
    boost::process::child c("/bin/true");
    c.wait();
    return c.id();
  } catch (const boost::process::process_error&) {
    return -1;
  }
}

}  // namespace corral::spawner
