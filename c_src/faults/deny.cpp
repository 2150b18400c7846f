// corral_deny: runs a program as if on an older kernel, for the tests of
// Corral's fallbacks (docs/KERNELS.md).
//
//   corral_deny [--syscalls NAME,...] [--no-cgroup] [--] PROGRAM [ARG...]
//
// --syscalls installs a seccomp filter under which each named system call
// fails with ENOSYS, as on a kernel that predates it. The filter is
// inherited by every process PROGRAM starts (a test binary's spawner, a
// VM's spawner, their children), so the whole tree sees the older kernel.
// Each denial is checked before PROGRAM runs: a call that does not fail
// with ENOSYS stops the launch, so a test can never pass unfiltered.
//
// --no-cgroup runs PROGRAM in a mount namespace of its own without any
// cgroup2 mount, as on a host without cgroup v2 (or one that does not show
// it to us): /proc/self/mountinfo lists none, so Corral falls back to
// process groups. Needs root (CAP_SYS_ADMIN).
//
// Test tooling only: nothing in the driver or the spawner knows about it.
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
// cppcheck-suppress preprocessorErrorDirective ; a deliberate stop on an unknown architecture
#error "corral_deny: add this architecture's AUDIT_ARCH_ value"
#endif

struct Known {
  const char* name;
  long nr;
  // Calls it with arguments that an unfiltered kernel refuses with an error
  // other than ENOSYS, and no side effect: -errno.
  long (*probe)();
};

long probe_result(long rc) { return rc < 0 ? -errno : rc; }

const Known kKnown[] = {
    {"clone3", SYS_clone3, [] { return probe_result(syscall(SYS_clone3, nullptr, 0)); }},
    {"pidfd_open", SYS_pidfd_open,
     [] { return probe_result(syscall(SYS_pidfd_open, getpid(), ~0U)); }},
    {"pidfd_send_signal", SYS_pidfd_send_signal,
     [] { return probe_result(syscall(SYS_pidfd_send_signal, -1, 0, nullptr, 0)); }},
    {"close_range", SYS_close_range,
     [] { return probe_result(syscall(SYS_close_range, ~0U, 0U, ~0U)); }},
};

const Known* find(const std::string& name) {
  for (const Known& k : kKnown)
    if (name == k.name) return &k;
  return nullptr;
}

[[noreturn]] void usage(const char* why) {
  fprintf(stderr,
          "corral_deny: %s\n"
          "usage: corral_deny [--syscalls NAME,...] [--no-cgroup] [--] PROGRAM [ARG...]\n"
          "known system calls:",
          why);
  for (const Known& k : kKnown) fprintf(stderr, " %s", k.name);
  fputc('\n', stderr);
  exit(2);
}

int install_filter(const std::vector<const Known*>& deny) {
  std::vector<sock_filter> prog;
  // A foreign architecture's numbers mean other calls: refuse them all.
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  prog.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  for (const Known* k : deny) {
    prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(k->nr), 0, 1));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
  }
  prog.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  // Lets an unprivileged user install it, and is inherited like the filter.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) < 0) return -errno;
  return 0;
}

// Unmounts every cgroup2 mount in a private mount namespace.
int hide_cgroup2() {
  if (unshare(CLONE_NEWNS) < 0) return -errno;
  // Our unmounts must not propagate back to the host's namespace.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) return -errno;
  for (int round = 0; round < 8; round++) {
    FILE* f = fopen("/proc/self/mountinfo", "re");
    if (!f) return -errno;
    std::vector<std::string> points;
    char* line = nullptr;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
      // "... mount_point options ... - fstype source super_options"
      const char* dash = strstr(line, " - cgroup2 ");
      if (!dash) continue;
      char point[4096];
      if (sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1) points.emplace_back(point);
    }
    free(line);
    fclose(f);
    if (points.empty()) return 0;
    // mountinfo escapes spaces; cgroup mount points have none in practice.
    for (const std::string& p : points)
      if (umount2(p.c_str(), MNT_DETACH) < 0) return -errno;
  }
  return -EBUSY;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<const Known*> deny;
  bool no_cgroup = false;
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") {
      i++;
      break;
    }
    if (a == "--no-cgroup") {
      no_cgroup = true;
    } else if (a == "--syscalls" && i + 1 < argc) {
      std::string list = argv[++i];
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        std::string name = list.substr(start, comma == std::string::npos ? comma : comma - start);
        if (!name.empty()) {
          const Known* k = find(name);
          if (!k) usage(("unknown system call: " + name).c_str());
          deny.push_back(k);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a.rfind('-', 0) == 0) {
      usage(("unknown option: " + a).c_str());
    } else {
      break;
    }
  }
  if (i >= argc) usage("no program");

  if (no_cgroup) {
    if (int rc = hide_cgroup2(); rc < 0) {
      fprintf(stderr, "corral_deny: cannot hide cgroup v2: %s\n", strerror(-rc));
      return 125;
    }
  }
  if (!deny.empty()) {
    if (int rc = install_filter(deny); rc < 0) {
      fprintf(stderr, "corral_deny: cannot install the seccomp filter: %s\n", strerror(-rc));
      return 125;
    }
    for (const Known* k : deny) {
      long rc = k->probe();
      if (rc != -ENOSYS) {
        fprintf(stderr, "corral_deny: %s still answers (%s), not ENOSYS\n", k->name,
                rc < 0 ? strerror(static_cast<int>(-rc)) : "success");
        return 125;
      }
    }
  }
  execvp(argv[i], argv + i);
  fprintf(stderr, "corral_deny: cannot run %s: %s\n", argv[i], strerror(errno));
  return 127;
}
