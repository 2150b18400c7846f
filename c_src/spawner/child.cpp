// Starts one child: builds argv/envp, clones, sets the child up and execs it.
//
// Everything that allocates happens before the clone. Between clone and
// execve the child makes system calls only; on failure it writes {errno,
// stage} to a CLOEXEC pipe, whose EOF tells the parent that the child has
// exec'd or exited, and so no longer runs on the parent's memory.
//
// With CORRAL_ASYNC_CLONE (x86-64; see child.h) the child is cloned with
// CLONE_VM and without CLONE_VFORK: the spawner goes on serving while the
// child sets itself up and execs (a vfork wait is the child's whole setup
// and the first half of execve, most of the spawner's time per spawn under
// load). The child then runs beside us in our memory, so it must not touch
// anything we may change: it reads only what the Launch owns, writes only
// its own stack, and makes raw system calls, which leave our errno (its TLS
// is ours) and the sanitizers' state alone. Otherwise (other platforms, or
// CORRAL_PORTABLE_CLONE) it is cloned with CLONE_VFORK: we wait until it has
// exec'd or exited, so libc's syscall() and its errno are safe.
//
// With ChildContext::share_fds_below the child also shares our fd table
// (CLONE_FILES) until its first step takes a copy of the low fds only, so
// that a spawner holding thousands of fds does not have them copied at each
// clone and closed at each exec; Launch keeps our copies of the child's
// ends until the child's 'u' says it has its own.
#include "child.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <poll.h>
#include <pwd.h>
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
#include <cstring>
#include <mutex>

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
  kFiles,
  kNice,
  kSetgroups,
  kSetgid,
  kSetuid,
  kNoNewPrivs,
  kNumStages,
};

const char* const kStageNames[kNumStages] = {
    "cgroup", "sigmask", "setpgid", "pdeathsig", "dup2",   "chdir",  "closefds",     "rlimit",
    "exec",   "files",   "nice",    "setgroups", "setgid", "setuid", "no_new_privs",
};

// The first byte a CLONE_FILES child writes once it has a table of its own.
constexpr char kUnshared = 'u';

struct StatusRecord {
  int32_t err;
  int32_t stage;
};
static_assert(sizeof(StatusRecord) == 8);

// Plan::src[2] values besides an fd.
constexpr int kDupStdout = -1;  // 2 = the stdout pipe
constexpr int kKeep = -2;       // 2 stays the spawner's stderr

// The kernel's struct sigaction, for the raw rt_sigaction: glibc's refuses
// 32 and 33 (its own), yet an ignored disposition of those survives execve
// like any other.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

// The child's code runs on a stack of its own in our address space until
// execve. AddressSanitizer does not know that stack: its bookkeeping before a
// noreturn call then reports false stack underflows. The child makes only
// system calls, so it is built without ASan instrumentation.
#define CORRAL_CHILD_CODE __attribute__((no_sanitize("address")))

// The clone flags and the system call wrapper follow one switch (child.h).
#if CORRAL_ASYNC_CLONE
// The child runs beside us: no CLONE_VFORK.
constexpr unsigned long kCloneFlags = CLONE_VM;
// A raw system call: -errno on failure, no errno, no libc, no interceptor.
CORRAL_CHILD_CODE __attribute__((always_inline)) inline long sys(long n, long a = 0, long b = 0,
                                                                 long c = 0, long d = 0) {
  register long r10 asm("r10") = d;
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
               : "rcx", "r11", "memory");
  return ret;
}
// For the calls that check a fifth argument (prctl's PR_SET_NO_NEW_PRIVS).
CORRAL_CHILD_CODE __attribute__((always_inline)) inline long sys5(long n, long a, long b, long c,
                                                                  long d, long e) {
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
               : "rcx", "r11", "memory");
  return ret;
}
#else
// The parent waits (CLONE_VFORK), so libc's errno and wrappers are safe.
constexpr unsigned long kCloneFlags = CLONE_VM | CLONE_VFORK;
CORRAL_CHILD_CODE inline long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0) {
  long r = syscall(n, a, b, c, d);
  return r < 0 ? -errno : r;
}
CORRAL_CHILD_CODE inline long sys5(long n, long a, long b, long c, long d, long e) {
  long r = syscall(n, a, b, c, d, e);
  return r < 0 ? -errno : r;
}
#endif

// The calls that take 32-bit ids (on 32-bit x86 the plain ones take 16-bit ids).
#ifdef SYS_setresuid32
constexpr long kSysSetgroups = SYS_setgroups32, kSysSetresgid = SYS_setresgid32,
               kSysSetresuid = SYS_setresuid32;
#else
constexpr long kSysSetgroups = SYS_setgroups, kSysSetresgid = SYS_setresgid,
               kSysSetresuid = SYS_setresuid;
#endif

template <typename T>
long arg(T* p) {
  return reinterpret_cast<long>(p);
}

// One resource limit, as prlimit64 takes it.
struct Limit {
  int resource;
  rlimit lim;
};

// The identity and limit steps (IdentitySpec), resolved before the clone.
// Only a child that asks for one has an Extra: the others pay one test of a
// null pointer, twice.
struct Extra {
  const Limit* limits;
  size_t n_limits;
  bool set_nice;
  int nice;
  bool set_groups;
  const gid_t* groups;
  size_t n_groups;
  bool set_gid;
  gid_t gid;
  bool set_uid;
  uid_t uid;
  long umask;  // -1: keep the spawner's
  bool no_new_privs;
};

// Everything the child needs, prepared before the clone.
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
  uint64_t reset_signals;
  int share_below;  // > 0: cloned with CLONE_FILES; unshare keeping fds below
  // The identity and limit steps; nullptr: none.
  const Extra* extra;
  // cgroup v1 leaves' cgroup.procs, joined after the v2 leaf
  int join_procs[kMaxJoinProcs];
  size_t n_join_procs;
};

[[noreturn]] CORRAL_CHILD_CODE void child_exit() {
  for (;;) sys(SYS_exit_group, 127);
}

// rc: the failed call's result (-errno).
[[noreturn]] CORRAL_CHILD_CODE void fail_child(int status_fd, Stage stage, long rc) {
  StatusRecord rec{static_cast<int32_t>(rc < 0 ? -rc : EIO), stage};
  (void)sys(SYS_write, status_fd, arg(&rec), sizeof rec);
  child_exit();
}

// Runs in the child between clone and execve: see the top of this file.
[[noreturn]] CORRAL_CHILD_CODE void child_main(const Plan& p) {
  long rc;
  int status_fd = p.status_fd;
  if (p.share_below > 0) {
    // Our fd table is the spawner's: take our own before touching any fd,
    // copying only the low fds (ours among them), then tell the spawner,
    // which may close its copies from then on.
    rc = sys(SYS_close_range, p.share_below, ~0U, CLOSE_RANGE_UNSHARE);
    if (rc < 0) rc = sys(SYS_unshare, CLONE_FILES);  // kernels before 5.9
    if (rc < 0) fail_child(status_fd, kFiles, rc);
    char u = kUnshared;
    (void)sys(SYS_write, status_fd, arg(&u), 1);
  }
  // Into the leaf first, so that everything the child does, and every
  // process it forks, is in the cgroup that kills them.
  if (p.cgroup_procs >= 0 && (rc = sys(SYS_write, p.cgroup_procs, arg("0"), 1)) != 1)
    fail_child(status_fd, kCgroup, rc);
  for (size_t i = 0; i < p.n_join_procs; i++)
    if ((rc = sys(SYS_write, p.join_procs[i], arg("0"), 1)) != 1)
      fail_child(status_fd, kCgroup, rc);

  // Every signal is blocked (the parent blocked them across the clone), so
  // no handler of ours runs here; reset them before unblocking.
  KernelSigaction dfl{SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig <= 64; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP && ((p.reset_signals >> (sig - 1)) & 1))
      (void)sys(SYS_rt_sigaction, sig, arg(&dfl), 0, 8);
  }
  uint64_t none = 0;
  if ((rc = sys(SYS_rt_sigprocmask, SIG_SETMASK, arg(&none), 0, 8)) < 0)
    fail_child(status_fd, kSigmask, rc);

  if ((rc = sys(SYS_setpgid, 0, 0)) < 0) fail_child(status_fd, kSetpgid, rc);

  if ((rc = sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL)) < 0) fail_child(status_fd, kPdeathsig, rc);
  if (sys(SYS_getppid) != p.parent) child_exit();  // the spawner died before PDEATHSIG was set

  // Move every source above 2 first, so that no dup below clobbers another.
  if (status_fd < 3) {
    rc = sys(SYS_fcntl, status_fd, F_DUPFD_CLOEXEC, 3);
    if (rc < 0) child_exit();
    status_fd = static_cast<int>(rc);
  }
  int src[3];
  for (int i = 0; i < 3; i++) {
    src[i] = p.src[i];
    if (src[i] >= 0 && src[i] < 3) {
      if ((rc = sys(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3)) < 0) fail_child(status_fd, kDup2, rc);
      src[i] = static_cast<int>(rc);
    }
  }
  for (int i = 0; i < 3; i++) {
    if (src[i] == kKeep) continue;
    int from = src[i] >= 0 ? src[i] : 1;  // kDupStdout; never i itself here
    if ((rc = sys(SYS_dup3, from, i, 0)) < 0) fail_child(status_fd, kDup2, rc);
  }

  if (const Extra* x = p.extra) {
    // What may need privilege (raising a hard limit, a lower nice value,
    // setgroups) comes before the uid changes; setuid comes last.
    for (size_t i = 0; i < x->n_limits; i++) {
      const Limit& l = x->limits[i];
      if ((rc = sys(SYS_prlimit64, 0, l.resource, arg(&l.lim), 0)) < 0)
        fail_child(status_fd, kRlimit, rc);
    }
    if (x->set_nice && (rc = sys(SYS_setpriority, PRIO_PROCESS, 0, x->nice)) < 0)
      fail_child(status_fd, kNice, rc);
    if (x->set_groups && (rc = sys(kSysSetgroups, static_cast<long>(x->n_groups),
                                   arg(const_cast<gid_t*>(x->groups)))) < 0)
      fail_child(status_fd, kSetgroups, rc);
    if (x->set_gid && (rc = sys(kSysSetresgid, x->gid, x->gid, x->gid)) < 0)
      fail_child(status_fd, kSetgid, rc);
    if (x->set_uid && (rc = sys(kSysSetresuid, x->uid, x->uid, x->uid)) < 0)
      fail_child(status_fd, kSetuid, rc);
    if (x->set_gid || x->set_uid) {
      // A change of credentials clears the parent-death signal: set it again,
      // and check again that the spawner did not die before it was.
      if ((rc = sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL)) < 0)
        fail_child(status_fd, kPdeathsig, rc);
      if (sys(SYS_getppid) != p.parent) child_exit();
    }
  }

  // After the uid change, so that the directory is one the program's user
  // may enter.
  if (p.cd && (rc = sys(SYS_chdir, arg(p.cd))) < 0) fail_child(status_fd, kChdir, rc);

  // Everything above 2 closes at exec; the status pipe stays usable until then.
  if (sys(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    for (unsigned long fd = 3; fd < p.max_fd; fd++) {
      if (static_cast<int>(fd) != status_fd) (void)sys(SYS_close, static_cast<long>(fd));
    }
  }

  // The spawner's own soft limit is raised for scale; give the program the
  // one the spawner started with. Open fds above it stay valid until exec.
  if (p.set_nofile && (rc = sys(SYS_prlimit64, 0, RLIMIT_NOFILE, arg(&p.nofile), 0)) < 0)
    fail_child(status_fd, kRlimit, rc);

  if (const Extra* x = p.extra) {
    if (x->umask >= 0) (void)sys(SYS_umask, x->umask);
    if (x->no_new_privs && (rc = sys5(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0)
      fail_child(status_fd, kNoNewPrivs, rc);
  }

  rc = sys(SYS_execve, arg(p.path), arg(p.argv), arg(p.envp));
  fail_child(status_fd, kExec, rc);
}

CORRAL_CHILD_CODE int clone_entry(void* arg) { child_main(*static_cast<const Plan*>(arg)); }

unsigned long clone_flags(const Plan& p) {
  return kCloneFlags | (p.share_below > 0 ? CLONE_FILES : 0);
}

#if CORRAL_ASYNC_CLONE
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

// kCloneFlags | CLONE_INTO_CGROUP: -1 with errno on failure (ENOSYS, E2BIG,
// EINVAL on kernels before 5.7), and the caller falls back.
pid_t clone_into_cgroup(const Plan* plan, char* stack, size_t size, int cgroup_dir) {
  clone_args args{};
  args.flags = clone_flags(*plan) | CLONE_INTO_CGROUP;
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

// Child stacks: 64 KiB above a guard page, kept for reuse, since several
// children may be between clone and exec at once.
constexpr size_t kStack = 64 << 10;
constexpr size_t kGuard = 4096;
constexpr size_t kKeptStacks = 64;
std::mutex g_stacks_mu;
std::vector<char*> g_stacks;

// The lowest usable address of a stack, or nullptr with errno set.
char* take_stack() {
  {
    std::lock_guard<std::mutex> lock(g_stacks_mu);
    if (!g_stacks.empty()) {
      char* s = g_stacks.back();
      g_stacks.pop_back();
      return s;
    }
  }
  void* m = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  if (mprotect(m, kGuard, PROT_NONE) < 0) {
    int e = errno;
    munmap(m, kStack + kGuard);
    errno = e;
    return nullptr;
  }
  return static_cast<char*>(m) + kGuard;
}

void give_back_stack(char* s) {
  {
    std::lock_guard<std::mutex> lock(g_stacks_mu);
    if (g_stacks.size() < kKeptStacks) {
      g_stacks.push_back(s);
      return;
    }
  }
  munmap(s - kGuard, kStack + kGuard);
}

// Makes a CLOEXEC pipe; returns false with errno set.
bool make_pipe(unique_fd& rd, unique_fd& wr, int flags = 0) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | flags) < 0) return false;
  rd.reset(p[0]);
  wr.reset(p[1]);
  return true;
}

}  // namespace

// What the child reads until it execs; see Launch.
struct Launch::Memory {
  SpawnSpec spec;
  std::vector<char*> argv, envp;
  Credentials creds;
  std::vector<Limit> limits;
  Extra extra{};
  Plan plan{};
  char* stack = nullptr;
  Memory() = default;
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  ~Memory() {
    if (stack) give_back_stack(stack);
  }
};

// --- identity and limits, before the clone ----------------------------------

namespace {

// One getpw*_r/getgr*_r call, the buffer growing on ERANGE. Returns 0 with
// found set, or -errno. Not finding an entry is not an error.
template <typename Entry, typename Call>
int lookup(Call call, Entry& entry, std::vector<char>& buf, bool& found) {
  if (buf.empty()) buf.resize(4096);
  for (;;) {
    Entry* res = nullptr;
    int rc = call(&entry, buf.data(), buf.size(), &res);
    if (rc == ERANGE && buf.size() < (size_t{1} << 24)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    // POSIX lets "no such entry" be ENOENT or ESRCH as well as 0.
    if (rc == 0 || rc == ENOENT || rc == ESRCH) {
      found = rc == 0 && res != nullptr;
      return 0;
    }
    return -rc;
  }
}

int group_id(const IdRef& ref, gid_t& ret) {
  if (ref.name.empty()) {
    ret = ref.id;
    return 0;
  }
  group gr{};
  std::vector<char> buf;
  bool found = false;
  int rc = lookup([&](group* e, char* b, size_t n,
                      group** res) { return getgrnam_r(ref.name.c_str(), e, b, n, res); },
                  gr, buf, found);
  if (rc < 0) return rc;
  if (!found) return -ENOENT;
  ret = gr.gr_gid;
  return 0;
}

std::vector<gid_t> sorted_unique(std::vector<gid_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Whether gs are exactly this process's supplementary groups.
bool our_groups(const std::vector<gid_t>& gs) {
  int n = getgroups(0, nullptr);
  if (n < 0) return false;
  std::vector<gid_t> ours(static_cast<size_t>(n));
  n = getgroups(n, ours.data());
  if (n < 0) return false;
  ours.resize(static_cast<size_t>(n));
  return sorted_unique(ours) == sorted_unique(gs);
}

}  // namespace

int resolve_credentials(const IdentitySpec& id, Credentials& ret, const char*& stage) {
  ret = Credentials{};
  passwd pw{};
  // cppcheck-suppress variableScope ; pw's strings point into it after the uid block
  std::vector<char> pwbuf;
  bool have_pw = false;
  auto fail = [&](const char* st, int rc) {
    stage = st;
    return rc;
  };
  if (id.uid) {
    int rc;
    if (!id.uid->name.empty()) {
      const std::string& name = id.uid->name;
      rc = lookup([&](passwd* e, char* b, size_t n,
                      passwd** res) { return getpwnam_r(name.c_str(), e, b, n, res); },
                  pw, pwbuf, have_pw);
      if (rc == 0 && !have_pw) rc = -ENOENT;
    } else if (!id.gid || !id.groups) {
      // A uid by number still brings its user's group and groups, if it has a user.
      uid_t uid = id.uid->id;
      rc = lookup(
          [&](passwd* e, char* b, size_t n, passwd** res) { return getpwuid_r(uid, e, b, n, res); },
          pw, pwbuf, have_pw);
    } else {
      rc = 0;
    }
    if (rc < 0) return fail("uid", rc);
    ret.set_uid = true;
    ret.uid = have_pw ? pw.pw_uid : id.uid->id;
  }
  if (id.gid) {
    if (int rc = group_id(*id.gid, ret.gid); rc < 0) return fail("gid", rc);
    ret.set_gid = true;
  } else if (id.uid) {
    // No user, no primary group to take: the caller must name one.
    if (!have_pw) return fail("gid", -ENOENT);
    ret.gid = pw.pw_gid;
    ret.set_gid = true;
  }
  if (id.groups) {
    ret.groups.reserve(id.groups->size());
    for (const IdRef& g : *id.groups) {
      gid_t gid;
      if (int rc = group_id(g, gid); rc < 0) return fail("groups", rc);
      ret.groups.push_back(gid);
    }
    ret.set_groups = true;
  } else if (id.uid) {
    // The user's groups, as initgroups(3) would set them; none without a user.
    if (have_pw) {
      int n = 32;
      for (;;) {
        ret.groups.resize(static_cast<size_t>(n));
        int want = n;
        if (getgrouplist(pw.pw_name, ret.gid, ret.groups.data(), &want) >= 0) {
          ret.groups.resize(static_cast<size_t>(want));
          break;
        }
        if (want <= n) return fail("groups", -EINVAL);  // cannot happen with glibc
        n = want;
      }
    }
    ret.set_groups = true;
  }
  // setgroups needs CAP_SETGID even for the groups we have: skip it then.
  if (ret.set_groups && our_groups(ret.groups)) ret.set_groups = false;
  return 0;
}

namespace {

// Fills extra (and its arrays) from id. user_nofile: id sets RLIMIT_NOFILE.
int prepare_extra(const IdentitySpec& id, Credentials& creds, std::vector<Limit>& limits,
                  Extra& extra, bool& user_nofile, const char*& stage) {
  if (int rc = resolve_credentials(id, creds, stage); rc < 0) return rc;
  limits.clear();
  user_nofile = false;
  for (const RlimitSpec& r : id.rlimits) {
    limits.push_back({r.resource, {static_cast<rlim_t>(r.soft), static_cast<rlim_t>(r.hard)}});
    if (r.resource == RLIMIT_NOFILE) user_nofile = true;
  }
  extra = Extra{};
  extra.limits = limits.data();
  extra.n_limits = limits.size();
  extra.set_nice = id.nice.has_value();
  extra.nice = id.nice.value_or(0);
  extra.set_groups = creds.set_groups;
  extra.groups = creds.groups.data();
  extra.n_groups = creds.groups.size();
  extra.set_gid = creds.set_gid;
  extra.gid = creds.gid;
  extra.set_uid = creds.set_uid;
  extra.uid = creds.uid;
  extra.umask = id.umask ? static_cast<long>(*id.umask) : -1;
  extra.no_new_privs = id.no_new_privs;
  return 0;
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

bool can_clone_into_cgroup() { return CORRAL_ASYNC_CLONE != 0; }

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0U)); }

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U));
}

int handled_signals(uint64_t& ret) {
  ret = 0;
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction old{};
    if (syscall(SYS_rt_sigaction, sig, nullptr, &old, 8) < 0) return -errno;
    if (old.handler != SIG_DFL) ret |= uint64_t{1} << (sig - 1);
  }
  return 0;
}

// --- Launch -------------------------------------------------------------------

Launch::Launch() = default;

Launch::Launch(Launch&& o) noexcept { *this = std::move(o); }

Launch& Launch::operator=(Launch&& o) noexcept {
  if (this == &o) return *this;
  settle();
  mem_ = std::move(o.mem_);
  pid_ = std::exchange(o.pid_, -1);
  child_ = std::move(o.child_);
  status_ = std::move(o.status_);
  held_ = std::move(o.held_);
  shared_ = std::exchange(o.shared_, false);
  reaped_ = std::exchange(o.reaped_, false);
  std::memcpy(rec_, o.rec_, sizeof rec_);
  got_ = std::exchange(o.got_, 0);
  error_ = o.error_;
  stage_ = o.stage_;
  done_ = std::exchange(o.done_, false);
  return *this;
}

Launch::~Launch() { settle(); }

void Launch::settle() {
  if (!mem_) return;
  if (!done_ && status_) {
    // The child may be mid-setup on our memory: stop it and wait for the
    // EOF that says it is off it. A child that still shares our fd table
    // holds the status pipe only through our copy: wait for its death
    // instead (as a zombie it is off our memory), then close that. A reaped
    // child is off it already, and its pid may be another process's.
    if (!reaped_) (void)kill(pid_, SIGKILL);
    if (!held_.empty()) {
      siginfo_t si;
      while (waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
      }
      held_.clear();
    }
    int fl = fcntl(status_.get(), F_GETFL);
    if (fl >= 0) (void)fcntl(status_.get(), F_SETFL, fl & ~O_NONBLOCK);
    char buf[16];
    ssize_t n;
    while ((n = read(status_.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    }
    if (n < 0) {
      (void)mem_.release();  // cannot tell when the child is done with it: leak it
      return;
    }
  }
  mem_.reset();
}

Launch::Result Launch::poll() {
  if (done_) return error_ ? Result::Failed : Result::Execed;
  for (;;) {
    char buf[16];
    ssize_t n = read(status_.get(), buf, sizeof buf);
    if (n > 0) {
      const char* b = buf;
      size_t len = static_cast<size_t>(n);
      if (shared_ && got_ == 0 && b[0] == kUnshared) {
        shared_ = false;
        held_.clear();  // the child has its own table now
        b++;
        len--;
      }
      size_t take = std::min(len, sizeof rec_ - got_);
      std::memcpy(rec_ + got_, b, take);
      got_ += take;
      if (got_ == sizeof rec_ && !held_.empty()) {
        // It failed before it had its own table (stage "files"), so the
        // status pipe ends only once we close our copies; it may still be
        // on our memory then, so that is never freed.
        held_.clear();
        (void)mem_.release();
      }
      // A short read emptied the pipe: its EOF (or the rest) makes it
      // readable again, and the caller polls again then. Asking now would
      // only return EAGAIN.
      if (static_cast<size_t>(n) < sizeof buf) return Result::Waiting;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Result::Waiting;
    if (n < 0) {
      // Cannot happen on our own pipe; stop the child, and since we cannot
      // tell when it is off our memory, never free that.
      if (!reaped_) (void)kill(pid_, SIGKILL);
      (void)mem_.release();
      error_ = errno;
      stage_ = "child";
    } else if (got_ == sizeof rec_) {
      StatusRecord rec;
      std::memcpy(&rec, rec_, sizeof rec);
      error_ = rec.err != 0 ? rec.err : EIO;
      stage_ = rec.stage >= 0 && rec.stage < kNumStages ? kStageNames[rec.stage] : "child";
    } else if (got_ > 0) {
      error_ = EIO;
      stage_ = "child";
    }
    // EOF with no record: execve succeeded (or the child died before
    // reporting; its exit status will tell). Either way it is off our memory.
    done_ = true;
    status_.reset();
    mem_.reset();
    return error_ ? Result::Failed : Result::Execed;
  }
}

void Launch::reaped() {
  reaped_ = true;
  held_.clear();
}

Launch::Result Launch::wait() {
  Result r;
  while ((r = poll()) == Result::Waiting) {
    pollfd pfd{status_.get(), POLLIN, 0};
    (void)::poll(&pfd, 1, -1);
  }
  return r;
}

int start_child(SpawnSpec&& spec, const ChildContext& ctx, Launch& ret, const char*& stage) {
  auto mem = std::make_unique<Launch::Memory>();
  mem->spec = std::move(spec);
  // Nothing started: the caller gets its spec back.
  // NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): a scope guard, never copied
  struct GiveBack {
    SpawnSpec& to;
    std::unique_ptr<Launch::Memory>& mem;
    ~GiveBack() {
      if (mem) to = std::move(mem->spec);
    }
  } give_back{spec, mem};
  const SpawnSpec& s = mem->spec;
  mem->argv = make_cstr_array(s.argv);
  mem->envp = make_cstr_array(s.env);
  const Extra* extra = nullptr;
  bool user_nofile = false;
  if (s.identity.any()) {
    if (int rc = prepare_extra(s.identity, mem->creds, mem->limits, mem->extra, user_nofile, stage);
        rc < 0)
      return rc;
    extra = &mem->extra;
  }

  auto fail = [&](const char* st) {
    stage = st;
    return -errno;
  };
  Child c;
  unique_fd in_r, out_w, err_w, devnull, status_r, status_w;
  if (s.in == StdinMode::Pipe && !make_pipe(in_r, c.in)) return fail("pipe");
  if (s.out == StdoutMode::Pipe && !make_pipe(c.out, out_w)) return fail("pipe");
  if (s.err == StderrMode::Pipe && !make_pipe(c.err, err_w)) return fail("pipe");
  int null_fd = ctx.devnull;
  if (null_fd < 0 &&
      (s.in == StdinMode::Null || s.out == StdoutMode::Null || s.err == StderrMode::Null)) {
    devnull.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) return fail("devnull");
    null_fd = devnull.get();
  }
  if (s.pipe_size > 0) {
    // Best effort: EPERM above /proc/sys/fs/pipe-max-size is not an error.
    if (c.in) (void)fcntl(c.in.get(), F_SETPIPE_SZ, s.pipe_size);
    if (out_w) (void)fcntl(out_w.get(), F_SETPIPE_SZ, s.pipe_size);
    if (err_w) (void)fcntl(err_w.get(), F_SETPIPE_SZ, s.pipe_size);
  }
  // Non-blocking at both ends: the child writes 8 bytes into an empty pipe.
  if (!make_pipe(status_r, status_w, O_NONBLOCK)) return fail("pipe");

  Plan& plan = mem->plan;
  plan.path = s.path.c_str();
  plan.argv = mem->argv.data();
  plan.envp = mem->envp.data();
  plan.cd = s.cd ? s.cd->c_str() : nullptr;
  plan.src[0] = in_r ? in_r.get() : null_fd;
  plan.src[1] = out_w ? out_w.get() : null_fd;
  plan.src[2] = s.err == StderrMode::Stdout    ? kDupStdout
                : s.err == StderrMode::Inherit ? kKeep
                : err_w                        ? err_w.get()
                                               : null_fd;
  plan.status_fd = status_w.get();
  plan.parent = ctx.self > 0 ? ctx.self : getpid();
  plan.cgroup_procs = -1;
  if (ctx.n_join_procs > kMaxJoinProcs) {
    errno = E2BIG;
    return fail("cgroup");
  }
  plan.n_join_procs = ctx.n_join_procs;
  for (size_t i = 0; i < ctx.n_join_procs; i++) plan.join_procs[i] = ctx.join_procs[i];
  // A nofile limit of the user's replaces the restore of the spawner's.
  plan.set_nofile = ctx.nofile != nullptr && !user_nofile;
  if (ctx.nofile) plan.nofile = *ctx.nofile;
  plan.reset_signals = ctx.reset_signals;
  plan.extra = extra;
  // Share our table only if every fd the child uses lies below the bound.
  plan.share_below = 0;
  if (ctx.share_fds_below > 3 && ctx.n_join_procs == 0) {
    int top = std::max({status_w.get(), plan.src[0], plan.src[1], plan.src[2], ctx.cgroup_procs});
    if (top < ctx.share_fds_below) plan.share_below = ctx.share_fds_below;
  }
  rlimit rl{};
  plan.max_fd = 1024;
  if (ctx.fd_limit > 0)
    rl.rlim_cur = ctx.fd_limit;
  else if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    rl.rlim_cur = RLIM_INFINITY;
  if (rl.rlim_cur != RLIM_INFINITY)
    plan.max_fd = rl.rlim_cur < (1UL << 20) ? rl.rlim_cur : (1UL << 20);
  mem->stack = take_stack();
  if (!mem->stack) return fail("fork");

  // Every signal is blocked across the clone, so no handler can run in the
  // child, on our memory, before it has reset its dispositions.
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = -1;
  int clone_errno = 0;
  if (ctx.cgroup_dir >= 0) {
    // Born in its leaf (clone3 CLONE_INTO_CGROUP): no cgroup move, which
    // takes a global lock, between clone and exec. Plan B (the child writes
    // to cgroup.procs) where the kernel or the architecture lacks it.
    pid = clone_into_cgroup(&plan, mem->stack, kStack, ctx.cgroup_dir);
    clone_errno = errno;
    if (pid < 0) {
      if (ctx.cgroup_procs < 0) {
        sigprocmask(SIG_SETMASK, &old, nullptr);
        errno = clone_errno;
        return fail("clone3");
      }
      plan.cgroup_procs = ctx.cgroup_procs;
    }
  } else {
    plan.cgroup_procs = ctx.cgroup_procs;
  }
  unique_fd procs_copy;
  if (pid < 0 && plan.share_below > 0 && plan.cgroup_procs >= 0) {
    // The caller closes its cgroup.procs when we return, which in a shared
    // table would close the child's: give the child a copy of ours to hold.
    procs_copy.reset(fcntl(plan.cgroup_procs, F_DUPFD_CLOEXEC, 3));
    if (procs_copy && procs_copy.get() < plan.share_below) {
      plan.cgroup_procs = procs_copy.get();
    } else {
      plan.share_below = 0;  // copy the whole table instead
    }
  }
  if (pid < 0) {
    pid = clone(clone_entry, mem->stack + kStack, static_cast<int>(clone_flags(plan)) | SIGCHLD,
                &plan);
    clone_errno = errno;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    errno = clone_errno;
    return fail("fork");
  }

  // No setpgid(pid, pid) here: the child leads its group before it can
  // exec, and nothing signals the group before its exec status has ended.
  Launch l;
  if (plan.share_below > 0) {
    // Shared table: these are the child's until it has its own.
    l.shared_ = true;
    for (unique_fd* fd : {&in_r, &out_w, &err_w, &devnull, &status_w, &procs_copy})
      if (*fd) l.held_.push_back(std::move(*fd));
  }
  // Otherwise the child has its own copies of these.
  in_r.reset();
  out_w.reset();
  err_w.reset();
  devnull.reset();
  status_w.reset();
  procs_copy.reset();

  l.mem_ = std::move(mem);
  l.pid_ = pid;
  c.pid = pid;
  l.child_ = std::move(c);
  l.status_ = std::move(status_r);
  ret = std::move(l);
  return 0;
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
