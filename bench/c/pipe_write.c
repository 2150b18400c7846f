/* Baseline for write throughput: spawns `sh -c 'cat > /dev/null'` with its
 * stdin on a pipe, writes MIB MiB in 1 MiB write(2) calls, closes the pipe,
 * waits, and prints "bytes=<n> seconds=<f>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  long mib = atol(argv[1]);
  size_t size = 1 << 20;
  char *buf = malloc(size);
  memset(buf, 'x', size);
  int fds[2];
  if (pipe(fds) != 0) return 1;
  /* The same pipe size as Corral's children get (pipe_size, 256 KiB). */
  if (fcntl(fds[1], F_SETPIPE_SZ, 262144) < 0) perror("F_SETPIPE_SZ");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  char *cargv[] = {"sh", "-c", "cat > /dev/null", NULL};
  pid_t pid;
  if (posix_spawnp(&pid, "sh", &fa, NULL, cargv, environ) != 0) return 1;
  close(fds[0]);
  unsigned long long total = 0;
  for (long i = 0; i < mib; i++) {
    size_t off = 0;
    while (off < size) {
      ssize_t n = write(fds[1], buf + off, size - off);
      if (n < 0) { perror("write"); return 1; }
      off += (size_t)n;
    }
    total += size;
  }
  close(fds[1]);
  int status;
  waitpid(pid, &status, 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("bytes=%llu seconds=%.4f\n", total, secs);
  return 0;
}
