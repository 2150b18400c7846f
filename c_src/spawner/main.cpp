// corral_spawner entry point: argv[1] is the request socket's fd (default 3),
// or --cgroup-info: print what a spawner here gets from cgroups and exit.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "cgroup_info.h"
#include "spawner.h"

namespace {

// The VM may have left signals ignored or blocked; start from a clean state.
void reset_signals() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &sa, nullptr);
  }
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Makes sure fds 0..2 are open, so no pipe we create lands on them.
void fill_stdio() {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int n = open("/dev/null", O_RDWR);
      if (n >= 0 && n != fd) close(n);  // lower fds were open; cannot happen
    }
  }
}

int serve(int argc, char** argv) {
  int fd = 3;
  if (argc > 1) {
    char* end = nullptr;
    errno = 0;
    long v = strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || v < 0 || v > 1 << 20) {
      fprintf(stderr, "corral_spawner: bad request fd '%s'\n", argv[1]);
      return 2;
    }
    fd = static_cast<int>(v);
  }
  if (fcntl(fd, F_GETFD) < 0) {
    fprintf(stderr, "corral_spawner: request fd %d: %s\n", fd, strerror(errno));
    return 2;
  }
  reset_signals();
  fill_stdio();
  corral::spawner::Spawner spawner{corral::unique_fd(fd)};
  if (int rc = spawner.init(); rc < 0) {
    fprintf(stderr, "corral_spawner: init: %s\n", strerror(-rc));
    return 1;
  }
  return spawner.run() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 2 && strcmp(argv[1], "--cgroup-info") == 0) {
      corral::spawner::cgroup::Info info;
      corral::spawner::cgroup::gather(info);
      std::string term = corral::spawner::cgroup::to_term(info);
      return fwrite(term.data(), 1, term.size(), stdout) == term.size() && fflush(stdout) == 0 ? 0
                                                                                               : 1;
    }
    return serve(argc, argv);
  } catch (const std::exception& e) {
    fprintf(stderr, "corral_spawner: fatal: %s\n", e.what());
  } catch (...) {
    fprintf(stderr, "corral_spawner: fatal: unknown exception\n");
  }
  return 1;
}
