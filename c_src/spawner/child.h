// Starts one child: builds argv/envp, forks, sets the child up and execs it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fd.h"
#include "options.h"

namespace corral::spawner {

using corral::unique_fd;

// The one platform switch for how a child is cloned (see Launch and
// child.cpp): 1 on x86-64, where the child is cloned without CLONE_VFORK and
// makes raw system calls; 0 elsewhere, or with CORRAL_PORTABLE_CLONE (a CMake
// option, so that x86-64 can test that path), where the caller waits
// (CLONE_VFORK) and libc's syscall() is safe.
#if defined(__x86_64__) && !defined(CORRAL_PORTABLE_CLONE)
#define CORRAL_ASYNC_CLONE 1
#else
#define CORRAL_ASYNC_CLONE 0
#endif

// The uid, gid and supplementary groups a child takes, resolved from its
// IdentitySpec by resolve_credentials before the clone.
struct Credentials {
  bool set_groups = false;  // setgroups(groups)
  std::vector<gid_t> groups;
  bool set_gid = false;  // setresgid(gid, gid, gid)
  gid_t gid = 0;
  bool set_uid = false;  // setresuid(uid, uid, uid)
  uid_t uid = 0;
};

// Resolves names with getpwnam_r/getgrnam_r (never in the child: they are
// not async-signal-safe, and may read files or ask NSS). A uid brings its
// user's primary group when no gid is given, and its user's groups
// (getgrouplist, as initgroups would) when no groups are given, as su and
// runuser do; a uid without a passwd entry needs an explicit gid. groups are
// set whenever a uid or groups is given, never for a gid alone; they are
// left alone when they already are this process's (so an unprivileged VM
// can name its own user). Returns 0, or -errno with stage "uid", "gid" or
// "groups": -ENOENT for a name (or a uid's primary group) that does not
// exist.
int resolve_credentials(const IdentitySpec& id, Credentials& ret, const char*& stage);

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

// What the spawner adds to a spec: where the child goes and what it gets
// back from the spawner's own settings.
struct ChildContext {
  // The leaf's cgroup.procs, opened O_WRONLY|O_CLOEXEC; the child writes "0"
  // to it before any other step (stage "cgroup"). -1: no cgroup, or the
  // child is cloned straight into cgroup_dir.
  int cgroup_procs = -1;
  // The leaf's directory (O_RDONLY|O_DIRECTORY): the child is cloned
  // straight into it with clone3(CLONE_INTO_CGROUP). -1: no cgroup. With
  // both set, cgroup_procs is the fallback where clone3 is refused.
  int cgroup_dir = -1;
  // When that clone3 fails and cgroup_procs is -1, the start fails with
  // stage "clone3" and the caller may start again with cgroup_procs (the
  // spawner does: see LeafPool).
  // Restored with setrlimit(RLIMIT_NOFILE) just before execve (stage
  // "rlimit"), undoing raise_nofile_limit. nullptr: inherit ours.
  const rlimit* nofile = nullptr;
  // Signals (bit sig-1) whose disposition the child resets to SIG_DFL: those
  // the caller ignores or handles. Default: all of them, which costs the
  // child some 60 system calls; see handled_signals().
  uint64_t reset_signals = ~uint64_t{0};
  // /dev/null opened O_RDWR, for null stdio. -1: opened for each child.
  int devnull = -1;
  // The caller's pid (the child's PDEATHSIG check) and its RLIMIT_NOFILE
  // soft limit (the bound of the close loop where close_range is missing),
  // when the caller knows them: two system calls fewer per spawn. 0: asked
  // for each child.
  pid_t self = 0;
  unsigned long fd_limit = 0;
  // > 0: the child is cloned with CLONE_FILES and, as its first step, takes
  // a table of its own holding only our fds below this number
  // (close_range(CLOSE_RANGE_UNSHARE)), so that it neither copies nor, at
  // exec, closes the thousands a busy spawner holds above it. Every fd the
  // child needs must then be below it; if one is not, that child copies
  // the whole table as usual. 0: copy the whole table.
  int share_fds_below = 0;
  // cgroup v1: the cgroup.procs (O_WRONLY|O_CLOEXEC) of each leaf the child
  // joins in the v1 hierarchies, written "0" right after the v2 join (stage
  // "cgroup"). A child with any copies our whole fd table (no sharing).
  const int* join_procs = nullptr;
  size_t n_join_procs = 0;
};

// Most v1 leaves one child joins (one per mounted v1 hierarchy in use).
inline constexpr size_t kMaxJoinProcs = 8;

// The signals (bit sig-1) whose disposition in this process is not SIG_DFL,
// for ChildContext::reset_signals. 0 or -errno.
int handled_signals(uint64_t& ret);

// A child between clone and execve. With CORRAL_ASYNC_CLONE the child is
// cloned with CLONE_VM but without CLONE_VFORK: the caller goes on at once
// while the child sets itself up on a stack and with argv/envp that this
// object owns, so it must outlive the child's use of them. Without it,
// start_child returns only once the child has exec'd or failed. The
// exec-status pipe tells when that use ends: poll() returns Execed or
// Failed only after its EOF, which comes once the child has exec'd or
// exited. Destroying a Launch still Waiting SIGKILLs the child and waits
// for that EOF.
class Launch {
 public:
  enum class Result { Waiting, Execed, Failed };

  Launch();
  ~Launch();
  Launch(Launch&&) noexcept;
  Launch& operator=(Launch&&) noexcept;
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  explicit operator bool() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The read end of the exec-status pipe (O_NONBLOCK), to wait on.
  int status_fd() const { return status_.get(); }
  // The parent ends of the child's pipes; valid from the start.
  Child& child() { return child_; }

  // Reads the status pipe. Waiting until its EOF; then Execed, or Failed
  // with error() and stage() (the failed child is then exiting; reap it).
  Result poll();
  // poll() until it is not Waiting, blocking in between.
  Result wait();
  int error() const { return error_; }
  const char* stage() const { return stage_; }
  // The child has been reaped before its exec status ended (it died during
  // its setup, or exec'd and exited). Its pid may be another process's from
  // now on, so it is never signalled again; and since it is off our memory,
  // the ends held for it (shared table) are closed, so that the pipe can end.
  void reaped();

 private:
  friend int start_child(SpawnSpec&& spec, const ChildContext& ctx, Launch& ret,
                         const char*& stage);
  struct Memory;
  // Frees mem_ once the child is off it, SIGKILLing a child still Waiting.
  void settle();
  std::unique_ptr<Memory> mem_;
  pid_t pid_ = -1;
  Child child_;
  unique_fd status_;
  // With CLONE_FILES: our copies of the child's ends (its pipes, the status
  // pipe's write end), which are its own until it has its own table. The
  // child says so with a first byte 'u' on the status pipe.
  std::vector<unique_fd> held_;
  bool shared_ = false;  // the child's first byte, 'u', is still to come
  bool reaped_ = false;  // see reaped()
  char rec_[8] = {};
  size_t got_ = 0;
  int error_ = 0;
  const char* stage_ = "";
  bool done_ = false;
};

// Starts spec: pipes, clone, and the child's setup and execve run on. Returns
// 0 with ret filled (spec moved into it), or -errno with stage set when
// nothing was started ("uid", "gid" or "groups": see resolve_credentials;
// "pipe", "devnull", "fork", "clone3" or "cgroup": see ChildContext); spec is then left as it was,
// for a second try. The child becomes a process group leader and gets SIGKILL when the spawner
// dies. The signal mask and the dispositions in ctx.reset_signals are reset in the child.
int start_child(SpawnSpec&& spec, const ChildContext& ctx, Launch& ret, const char*& stage);

// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (capped by
// fs.nr_open), so that one spawner can hold 10,000 children's sockets, and
// returns the original limits in ret_original for ChildContext::nofile:
// programs that use select() break above 1024. Returns 0 or -errno.
int raise_nofile_limit(rlimit& ret_original);

// Whether clone3(CLONE_INTO_CGROUP) is built in: without it a child with a
// cgroup joins it through ChildContext::cgroup_procs.
bool can_clone_into_cgroup();

// Raw syscalls that glibc 2.36 does not wrap. Return -1 and set errno on failure.
int pidfd_open(pid_t pid);
int pidfd_send_signal(int pidfd, int sig);

}  // namespace corral::spawner
