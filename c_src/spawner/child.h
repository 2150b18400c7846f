// Starts one child: builds argv/envp, forks, sets the child up and execs it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "options.h"

namespace corral::spawner {

// Owns one file descriptor; closes it on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A NULL-terminated array of pointers into strs, for execve. strs must
// outlive the result and must not be modified meanwhile.
std::vector<char*> make_cstr_array(const std::vector<std::string>& strs);

// A started child: its pid (also its process group id) and the parent ends
// of its pipes.
struct Child {
  pid_t pid = -1;
  unique_fd in;   // write end of the child's stdin, if piped
  unique_fd out;  // read end of the child's stdout, if piped
  unique_fd err;  // read end of the child's stderr, if piped
  // frame::kFd* bits for the pipes that are present.
  uint32_t mask() const;
};

struct SpawnResult {
  bool ok = false;
  Child child;             // when ok
  int error = 0;           // errno, when !ok
  const char* stage = "";  // setup stage that failed, when !ok
};

// What the spawner adds to a spec: where the child goes and what it gets
// back from the spawner's own settings.
struct ChildContext {
  // The leaf's cgroup.procs, opened O_WRONLY|O_CLOEXEC; the child writes "0"
  // to it before any other step (stage "cgroup"). -1: no cgroup.
  int cgroup_procs = -1;
  // The leaf's directory (O_RDONLY|O_DIRECTORY): the child is then cloned
  // straight into it with clone3(CLONE_INTO_CGROUP) and cgroup_procs is only
  // the fallback for kernels without it. -1: no cgroup.
  int cgroup_dir = -1;
  // Restored with setrlimit(RLIMIT_NOFILE) just before execve (stage
  // "rlimit"), undoing raise_nofile_limit. nullptr: inherit ours.
  const rlimit* nofile = nullptr;
};

// Forks and execs spec. Returns once the child has exec'd (ok) or failed
// before exec (the failed child is reaped here). The child becomes a process
// group leader and gets SIGKILL when the calling thread dies. All signal
// dispositions and the signal mask are reset in the child.
SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx = {});

// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (capped by
// fs.nr_open), so that one spawner can hold 10,000 children's sockets, and
// returns the original limits in ret_original for ChildContext::nofile:
// programs that use select() break above 1024. Returns 0 or -errno.
int raise_nofile_limit(rlimit& ret_original);

// Raw syscalls that glibc 2.36 does not wrap. Return -1 and set errno on failure.
int pidfd_open(pid_t pid);
int pidfd_send_signal(int pidfd, int sig);

}  // namespace corral::spawner
