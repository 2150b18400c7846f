// Starts one child: builds argv/envp, forks, sets the child up and execs it.
//
// Everything that allocates happens before fork. Between fork and execve the
// child uses only async-signal-safe calls; on failure it writes {errno,
// stage} to a CLOEXEC pipe, whose EOF tells the parent that execve succeeded.
#include "child.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>

#include "frame.h"

namespace corral::spawner {
namespace {

enum Stage : int32_t {
  kCgroup,
  kSigmask,
  kSetpgid,
  kPdeathsig,
  kDup2,
  kChdir,
  kCloseFds,
  kRlimit,
  kExec,
  kNumStages,
};

const char* const kStageNames[kNumStages] = {
    "cgroup", "sigmask", "setpgid", "pdeathsig", "dup2", "chdir", "closefds", "rlimit", "exec",
};

struct StatusRecord {
  int32_t err;
  int32_t stage;
};

// Plan::src[2] values besides an fd.
constexpr int kDupStdout = -1;  // 2 = the stdout pipe
constexpr int kKeep = -2;       // 2 stays the spawner's stderr

// Everything the child needs, prepared before fork.
struct Plan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cd;        // nullptr: stay
  int src[3];            // fds to place on 0, 1, 2; src[2]: kDupStdout or kKeep too
  int status_fd;         // write end of the exec-status pipe
  pid_t parent;          // the spawner's pid, for the PDEATHSIG race check
  unsigned long max_fd;  // close_range fallback bound
  int cgroup_procs;      // the leaf's cgroup.procs, or -1
  bool set_nofile;       // restore nofile before execve
  rlimit nofile;
};

// The child's code runs on a stack of its own in our address space until
// execve. AddressSanitizer does not know that stack: its bookkeeping before a
// noreturn call (_exit) then reports false stack underflows. The child makes
// only system calls, so it is built without ASan instrumentation.
#define CORRAL_CHILD_CODE __attribute__((no_sanitize("address")))

CORRAL_CHILD_CODE [[noreturn]] void fail_child(int status_fd, Stage stage) {
  StatusRecord rec{errno, stage};
  ssize_t n = write(status_fd, &rec, sizeof rec);
  (void)n;
  _exit(127);
}

// Runs in the child between clone and execve: async-signal-safe calls only,
// and, since the child shares our memory until execve, no writes to
// anything but its own stack.
CORRAL_CHILD_CODE [[noreturn]] void child_main(Plan p) {
  // Into the leaf first, so that everything the child does, and every
  // process it forks, is in the cgroup that kills them.
  if (p.cgroup_procs >= 0 && write(p.cgroup_procs, "0", 1) != 1) fail_child(p.status_fd, kCgroup);

  // The raw system call: glibc's sigaction refuses 32 and 33 (its own), yet
  // an ignored disposition of those survives execve like any other.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
  } dfl{SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) fail_child(p.status_fd, kSigmask);

  if (setpgid(0, 0) < 0) fail_child(p.status_fd, kSetpgid);

  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail_child(p.status_fd, kPdeathsig);
  if (getppid() != p.parent) _exit(127);  // the spawner died before PDEATHSIG was set

  // Move every source above 2 first, so that no dup2 below clobbers another.
  if (p.status_fd < 3) {
    p.status_fd = fcntl(p.status_fd, F_DUPFD_CLOEXEC, 3);
    if (p.status_fd < 0) _exit(127);
  }
  for (int& fd : p.src) {
    if (fd >= 0 && fd < 3) {
      fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
      if (fd < 0) fail_child(p.status_fd, kDup2);
    }
  }
  for (int i = 0; i < 3; i++) {
    if (p.src[i] == kKeep) continue;
    int from = p.src[i] >= 0 ? p.src[i] : 1;
    if (dup2(from, i) < 0) fail_child(p.status_fd, kDup2);
  }

  if (p.cd && chdir(p.cd) < 0) fail_child(p.status_fd, kChdir);

  // Everything above 2 closes at exec; the status pipe stays usable until then.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    for (unsigned long fd = 3; fd < p.max_fd; fd++) {
      if (static_cast<int>(fd) != p.status_fd) close(static_cast<int>(fd));
    }
  }

  // The spawner's own soft limit is raised for scale; give the program the
  // one the spawner started with. Open fds above it stay valid until exec.
  if (p.set_nofile && setrlimit(RLIMIT_NOFILE, &p.nofile) < 0) fail_child(p.status_fd, kRlimit);

  execve(p.path, p.argv, p.envp);
  fail_child(p.status_fd, kExec);
}

CORRAL_CHILD_CODE int clone_entry(void* arg) { child_main(*static_cast<const Plan*>(arg)); }

#if defined(__x86_64__)
// clone3 whose child runs fn(arg) on the given stack and exits with its
// result: glibc 2.36 exports no clone3 wrapper. The syscall keeps r8 and r9,
// so the child finds fn and arg there; the kernel starts it with rsp at the
// top of the new stack (16-byte aligned), and the call pushes the return
// address the ABI expects.
extern "C" long corral_clone3(clone_args* args, size_t size, int (*fn)(void*), void* arg);
asm(R"(
    .text
    .globl corral_clone3
    .type corral_clone3, @function
corral_clone3:
    mov %rcx, %r8
    mov %rdx, %r9
    mov $435, %eax
    syscall
    test %rax, %rax
    jnz 1f
    xor %ebp, %ebp
    mov %r8, %rdi
    call *%r9
    mov %eax, %edi
    mov $60, %eax
    syscall
    hlt
1:
    ret
    .size corral_clone3, .-corral_clone3
)");

// CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP: -1 with errno on failure
// (ENOSYS, E2BIG, EINVAL on kernels before 5.7), and the caller falls back.
pid_t clone_into_cgroup(const Plan* plan, char* stack, size_t size, int cgroup_dir) {
  clone_args args{};
  args.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<uint64_t>(stack);
  args.stack_size = size;
  args.cgroup = static_cast<uint64_t>(cgroup_dir);
  long rc = corral_clone3(&args, sizeof args, clone_entry, const_cast<Plan*>(plan));
  if (rc < 0) {
    errno = static_cast<int>(-rc);
    return -1;
  }
  return static_cast<pid_t>(rc);
}
#else
pid_t clone_into_cgroup(const Plan*, char*, size_t, int) {
  errno = ENOSYS;
  return -1;
}
#endif

SpawnResult failure(int err, const char* stage) {
  SpawnResult r;
  r.error = err;
  r.stage = stage;
  return r;
}

// Makes a CLOEXEC pipe; returns false with errno set.
bool make_pipe(unique_fd& rd, unique_fd& wr) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return false;
  rd.reset(p[0]);
  wr.reset(p[1]);
  return true;
}

}  // namespace

std::vector<char*> make_cstr_array(const std::vector<std::string>& strs) {
  std::vector<char*> v;
  v.reserve(strs.size() + 1);
  for (const std::string& s : strs) v.push_back(const_cast<char*>(s.c_str()));
  v.push_back(nullptr);
  return v;
}

uint32_t Child::mask() const {
  return (in ? frame::kFdStdin : 0) | (out ? frame::kFdStdout : 0) | (err ? frame::kFdStderr : 0);
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0U)); }

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U));
}

SpawnResult spawn_child(const SpawnSpec& spec, const ChildContext& ctx) {
  std::vector<char*> argv = make_cstr_array(spec.argv);
  std::vector<char*> envp = make_cstr_array(spec.env);

  Child c;
  unique_fd in_r, out_w, err_w, devnull, status_r, status_w;
  if (spec.in == StdinMode::Pipe && !make_pipe(in_r, c.in)) return failure(errno, "pipe");
  if (spec.out == StdoutMode::Pipe && !make_pipe(c.out, out_w)) return failure(errno, "pipe");
  if (spec.err == StderrMode::Pipe && !make_pipe(c.err, err_w)) return failure(errno, "pipe");
  if (spec.in == StdinMode::Null || spec.out == StdoutMode::Null || spec.err == StderrMode::Null) {
    devnull.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) return failure(errno, "devnull");
  }
  if (spec.pipe_size > 0) {
    // Best effort: EPERM above /proc/sys/fs/pipe-max-size is not an error.
    if (c.in) (void)fcntl(c.in.get(), F_SETPIPE_SZ, spec.pipe_size);
    if (out_w) (void)fcntl(out_w.get(), F_SETPIPE_SZ, spec.pipe_size);
    if (err_w) (void)fcntl(err_w.get(), F_SETPIPE_SZ, spec.pipe_size);
  }
  if (!make_pipe(status_r, status_w)) return failure(errno, "pipe");

  Plan plan{};
  plan.path = spec.path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.cd = spec.cd ? spec.cd->c_str() : nullptr;
  plan.src[0] = in_r ? in_r.get() : devnull.get();
  plan.src[1] = out_w ? out_w.get() : devnull.get();
  plan.src[2] = spec.err == StderrMode::Stdout    ? kDupStdout
                : spec.err == StderrMode::Inherit ? kKeep
                : err_w                           ? err_w.get()
                                                  : devnull.get();
  plan.status_fd = status_w.get();
  plan.parent = getpid();
  plan.cgroup_procs = ctx.cgroup_procs;
  plan.set_nofile = ctx.nofile != nullptr;
  if (ctx.nofile) plan.nofile = *ctx.nofile;
  rlimit rl{};
  plan.max_fd = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    plan.max_fd = rl.rlim_cur < (1UL << 20) ? rl.rlim_cur : (1UL << 20);

  // clone(CLONE_VM | CLONE_VFORK), as posix_spawn does: no page tables are
  // copied, and we resume only once the child has exec'd or failed, so the
  // exec-status pipe answers at once. The child runs on its own stack and
  // writes nothing of ours but errno (ours is not read until it is done).
  // Every signal is blocked across the clone, so no handler can run on the
  // shared memory before the child has reset its dispositions.
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  static char* stack = nullptr;
  constexpr size_t kStack = 256 << 10;
  if (!stack) {
    void* m = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      sigprocmask(SIG_SETMASK, &old, nullptr);
      return failure(e, "fork");
    }
    stack = static_cast<char*>(m);
  }
  pid_t pid = -1;
  int clone_errno = 0;
  if (ctx.cgroup_dir >= 0) {
    // Born in its leaf (clone3 CLONE_INTO_CGROUP): no cgroup move, which
    // takes a global lock, between clone and exec. Plan B (the child writes
    // to cgroup.procs) where the kernel or the architecture lacks it.
    Plan direct = plan;
    direct.cgroup_procs = -1;
    pid = clone_into_cgroup(&direct, stack, kStack, ctx.cgroup_dir);
    clone_errno = errno;
  }
  if (pid < 0) {
    pid = clone(clone_entry, stack + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    clone_errno = errno;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return failure(clone_errno, "fork");

  c.pid = pid;
  (void)setpgid(pid, pid);  // closes the race with the child's own setpgid
  in_r.reset();
  out_w.reset();
  err_w.reset();
  devnull.reset();
  status_w.reset();

  StatusRecord rec{};
  ssize_t n;
  do {
    n = read(status_r.get(), &rec, sizeof rec);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof rec)) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    const char* stage = rec.stage >= 0 && rec.stage < kNumStages ? kStageNames[rec.stage] : "child";
    return failure(rec.err, stage);
  }
  // EOF: execve succeeded (or the child died before reporting; its exit status
  // will tell).
  SpawnResult r;
  r.ok = true;
  r.child = std::move(c);
  return r;
}

int raise_nofile_limit(rlimit& ret_original) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return -errno;
  ret_original = rl;
  if (rl.rlim_cur == rl.rlim_max) return 0;
  rlimit raised = rl;
  raised.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return 0;
  // An unlimited hard limit is still capped by fs.nr_open.
  int err = errno;
  FILE* f = fopen("/proc/sys/fs/nr_open", "re");
  unsigned long nr_open = 0;
  bool got = f && fscanf(f, "%lu", &nr_open) == 1;
  if (f) fclose(f);
  if (!got || nr_open <= rl.rlim_cur) return -err;
  raised.rlim_cur = std::min<rlim_t>(rl.rlim_max, nr_open);
  return setrlimit(RLIMIT_NOFILE, &raised) == 0 ? 0 : -errno;
}

}  // namespace corral::spawner
