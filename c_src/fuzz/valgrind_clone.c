// Preloaded into corral_spawner for `make memcheck` only.
//
// Valgrind emulates clone() only for threads and for fork/vfork. The
// spawner clones its children with CLONE_VM and without CLONE_VFORK (they
// run beside it on its memory until execve), optionally with CLONE_FILES,
// which Valgrind refuses. This wrapper turns such a clone into
// CLONE_VM|CLONE_VFORK, which Valgrind runs as a fork: the child's code
// is the same, it only gets a copy of the spawner's memory and fd table
// instead of sharing them, which the spawner's protocol with the child (a
// status pipe, the 'u' byte after the table is unshared) tolerates.
// clone3 already fails with ENOSYS under Valgrind, so the spawner falls
// back to clone() and the cgroup.procs join.
#define _GNU_SOURCE  // NOLINT(bugprone-reserved-identifier): glibc's feature-test macro
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/types.h>

typedef int (*clone_fn)(int (*)(void*), void*, int, void*, ...);

int clone(int (*fn)(void*), void* stack, int flags, void* arg, ...) {
  static clone_fn real;
  if (!real) real = (clone_fn)dlsym(RTLD_NEXT, "clone");
  va_list ap;
  va_start(ap, arg);
  pid_t* ptid = va_arg(ap, pid_t*);
  void* tls = va_arg(ap, void*);
  pid_t* ctid = va_arg(ap, pid_t*);
  va_end(ap);
  if ((flags & CLONE_VM) && !(flags & CLONE_THREAD)) {
    flags |= CLONE_VFORK;
    flags &= ~CLONE_FILES;
  }
  return real(fn, stack, flags, arg, ptid, tls, ctid);
}
