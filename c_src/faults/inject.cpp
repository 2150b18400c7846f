// corral_inject.so: an LD_PRELOAD shim that makes chosen libc calls fail, for
// the tests of Corral's failure paths. Test tooling only: nothing in the
// driver or the spawner knows about it.
//
// Environment:
//   CORRAL_FAULT=CALL:ACTION[:SKIP[:COUNT]][,...]
//       CALL is one of pipe2, clone, sendmsg, recvmsg, epoll_ctl. The first
//       SKIP calls (default 0) go through; the next COUNT (default 1; 0 for
//       every one) fail. ACTION is an errno name (EMFILE, ENFILE, ENOMEM,
//       EAGAIN, ENOBUFS, EPIPE, EIO) or "die" (the process SIGKILLs itself
//       inside the call, as a crash at that point would).
//   CORRAL_FAULT_HIDE=NAME[,...]
//       open/openat of a path whose last component is NAME fails with
//       ENOENT, as for a file an older kernel does not have (cgroup.kill).
//   CORRAL_FAULT_PROC=NAME
//       act only in processes whose program is NAME (e.g. corral_spawner),
//       so that the shim can be set in a VM's environment and reach only
//       the spawner that VM starts. Elsewhere every call goes through.
//   CORRAL_FAULT_ONCE=PATH
//       the failures happen in one process only: the first to reach one,
//       which creates PATH (O_EXCL). A spawner started again after the
//       fault killed it then runs clean.
//   CORRAL_FAULT_LOG=PATH
//       appends one line per injected failure ("CALL ACTION"), so a test can
//       check that its fault fired.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

namespace {

enum Call { kPipe2, kClone, kSendmsg, kRecvmsg, kEpollCtl, kNumCalls };
const char* const kCallNames[kNumCalls] = {"pipe2", "clone", "sendmsg", "recvmsg", "epoll_ctl"};

constexpr int kDie = -1;

struct Errno {
  const char* name;
  int value;
};
const Errno kErrnos[] = {{"EMFILE", EMFILE}, {"ENFILE", ENFILE},   {"ENOMEM", ENOMEM},
                         {"EAGAIN", EAGAIN}, {"ENOBUFS", ENOBUFS}, {"EPIPE", EPIPE},
                         {"EIO", EIO}};

struct Rule {
  bool set = false;
  int action = 0;  // an errno, or kDie
  long skip = 0;
  long count = 1;  // 0: for ever
  std::atomic<long> calls{0};
};

Rule g_rules[kNumCalls];
constexpr int kMaxHidden = 8;
char g_hidden[kMaxHidden][64];
int g_nhidden = 0;
bool g_active = false;
const char* g_log = nullptr;
const char* g_once = nullptr;
int g_once_state = 0;  // 0: not asked yet, 1: ours, -1: another process's

[[noreturn]] void bad_spec(const char* what, const char* spec) {
  fprintf(stderr, "corral_inject: bad %s in '%s'\n", what, spec);
  _exit(125);
}

void parse_rule(char* spec) {
  char* save = nullptr;
  char* call = strtok_r(spec, ":", &save);
  char* action = strtok_r(nullptr, ":", &save);
  char* skip = strtok_r(nullptr, ":", &save);
  char* count = strtok_r(nullptr, ":", &save);
  if (!call || !action) bad_spec("rule", spec);
  int c = 0;
  while (c < kNumCalls && strcmp(kCallNames[c], call) != 0) c++;
  if (c == kNumCalls) bad_spec("call", call);
  Rule& r = g_rules[c];
  r.set = true;
  if (strcmp(action, "die") == 0) {
    r.action = kDie;
  } else {
    r.action = 0;
    for (const Errno& e : kErrnos)
      if (strcmp(e.name, action) == 0) r.action = e.value;
    if (r.action == 0) bad_spec("action", action);
  }
  r.skip = skip ? strtol(skip, nullptr, 10) : 0;
  r.count = count ? strtol(count, nullptr, 10) : 1;
}

__attribute__((constructor)) void init() {
  const char* proc = getenv("CORRAL_FAULT_PROC");
  if (proc && strcmp(proc, program_invocation_short_name) != 0) return;
  g_active = true;
  g_log = getenv("CORRAL_FAULT_LOG");
  g_once = getenv("CORRAL_FAULT_ONCE");
  if (const char* spec = getenv("CORRAL_FAULT")) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    char* save = nullptr;
    for (char* r = strtok_r(buf, ",", &save); r; r = strtok_r(nullptr, ",", &save)) {
      char one[128];
      snprintf(one, sizeof one, "%s", r);
      parse_rule(one);
    }
  }
  if (const char* hide = getenv("CORRAL_FAULT_HIDE")) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", hide);
    char* save = nullptr;
    for (char* n = strtok_r(buf, ",", &save); n && g_nhidden < kMaxHidden;
         n = strtok_r(nullptr, ",", &save))
      snprintf(g_hidden[g_nhidden++], sizeof g_hidden[0], "%s", n);
  }
}

void note(const char* call, const char* what) {
  if (!g_log) return;
  int saved = errno;
  int fd = open(g_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    char line[128];
    int n = snprintf(line, sizeof line, "%s %s\n", call, what);
    (void)!write(fd, line, static_cast<size_t>(n));
    close(fd);
  }
  errno = saved;
}

// True if this call is to fail (errno is then set); a "die" rule never
// returns.
bool inject(Call c) {
  if (!g_active) return false;
  Rule& r = g_rules[c];
  if (!r.set) return false;
  long n = r.calls.fetch_add(1);
  if (n < r.skip || (r.count > 0 && n >= r.skip + r.count)) return false;
  if (g_once && g_once_state == 0) {
    int saved = errno;
    int fd = open(g_once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    g_once_state = fd >= 0 ? 1 : -1;
    if (fd >= 0) close(fd);
    errno = saved;
  }
  if (g_once_state < 0) return false;
  if (r.action == kDie) {
    note(kCallNames[c], "die");
    raise(SIGKILL);
    // cppcheck-suppress unreachableCode ; a shim must never fall through into the real call
    for (;;) pause();
  }
  const char* name = "?";
  for (const Errno& e : kErrnos)
    if (e.value == r.action) name = e.name;
  note(kCallNames[c], name);
  errno = r.action;
  return true;
}

bool hidden(const char* path) {
  if (!g_active || g_nhidden == 0 || !path) return false;
  const char* base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (int i = 0; i < g_nhidden; i++) {
    if (strcmp(base, g_hidden[i]) == 0) {
      note("open", base);
      errno = ENOENT;
      return true;
    }
  }
  return false;
}

template <typename F>
F next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" {

int pipe2(int fds[2], int flags) {
  static auto real = next<int (*)(int*, int)>("pipe2");
  if (inject(kPipe2)) return -1;
  return real(fds, flags);
}

int clone(int (*fn)(void*), void* stack, int flags, void* arg, ...) {
  static auto real = next<int (*)(int (*)(void*), void*, int, void*, ...)>("clone");
  va_list ap;
  va_start(ap, arg);
  void* ptid = va_arg(ap, void*);
  void* tls = va_arg(ap, void*);
  void* ctid = va_arg(ap, void*);
  va_end(ap);
  if (inject(kClone)) return -1;
  return real(fn, stack, flags, arg, ptid, tls, ctid);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  static auto real = next<ssize_t (*)(int, const msghdr*, int)>("sendmsg");
  if (inject(kSendmsg)) return -1;
  return real(fd, msg, flags);
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  static auto real = next<ssize_t (*)(int, msghdr*, int)>("recvmsg");
  if (inject(kRecvmsg)) return -1;
  return real(fd, msg, flags);
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) {
  static auto real = next<int (*)(int, int, int, epoll_event*)>("epoll_ctl");
  // Removals are cleanup; failing them tests nothing.
  if (op != EPOLL_CTL_DEL && inject(kEpollCtl)) return -1;
  return real(epfd, op, fd, ev);
}

// open and openat with their 64-bit and fortified aliases: the mode is
// passed on whatever the flags (the kernel ignores it without O_CREAT).
#define CORRAL_OPEN(name)                                           \
  int name(const char* path, int flags, ...) {                      \
    static auto real = next<int (*)(const char*, int, ...)>(#name); \
    va_list ap;                                                     \
    va_start(ap, flags);                                            \
    mode_t mode = va_arg(ap, mode_t);                               \
    va_end(ap);                                                     \
    if (hidden(path)) return -1;                                    \
    return real(path, flags, mode);                                 \
  }
#define CORRAL_OPENAT(name)                                              \
  int name(int dir, const char* path, int flags, ...) {                  \
    static auto real = next<int (*)(int, const char*, int, ...)>(#name); \
    va_list ap;                                                          \
    va_start(ap, flags);                                                 \
    mode_t mode = va_arg(ap, mode_t);                                    \
    va_end(ap);                                                          \
    if (hidden(path)) return -1;                                         \
    return real(dir, path, flags, mode);                                 \
  }
CORRAL_OPEN(open)
CORRAL_OPEN(open64)
CORRAL_OPENAT(openat)
CORRAL_OPENAT(openat64)

// glibc's fortified open calls these names; the shim must wrap them too.
int __open_2(const char* path, int flags) {  // NOLINT(bugprone-reserved-identifier)
  static auto real = next<int (*)(const char*, int)>("__open_2");
  if (hidden(path)) return -1;
  return real(path, flags);
}

int __open64_2(const char* path, int flags) {  // NOLINT(bugprone-reserved-identifier)
  static auto real = next<int (*)(const char*, int)>("__open64_2");
  if (hidden(path)) return -1;
  return real(path, flags);
}

}  // extern "C"
