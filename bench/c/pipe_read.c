/* Baseline for the throughput benchmark: the raw pipe limit.
 *
 *   pipe_read BUFSIZE FILE [PIPESIZE]
 *
 * Spawns `cat FILE` with its stdout on a pipe, reads the pipe to EOF with
 * read(2) calls of BUFSIZE bytes, and prints "bytes=<n> seconds=<f> mbps=<f>"
 * (MB = 10^6 bytes). PIPESIZE, when given, enlarges the pipe first
 * (F_SETPIPE_SZ), as Corral's spawner does with its `pipe_size`. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: %s BUFSIZE FILE [PIPESIZE]\n", argv[0]);
    return 2;
  }
  size_t size = (size_t)atol(argv[1]);
  char *buf = size ? malloc(size) : NULL;
  if (!buf) return 2;
  int fds[2];
  if (pipe(fds) != 0) return 1;
  if (argc == 4 && fcntl(fds[0], F_SETPIPE_SZ, atoi(argv[3])) < 0) perror("F_SETPIPE_SZ");

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  char *cargv[] = {"cat", argv[2], NULL};
  pid_t pid;
  if (posix_spawnp(&pid, "cat", &fa, NULL, cargv, environ) != 0) return 1;
  close(fds[1]);

  unsigned long long total = 0;
  for (;;) {
    ssize_t n = read(fds[0], buf, size);
    if (n > 0) {
      total += (unsigned long long)n;
    } else if (n == 0) {
      break;
    } else {
      perror("read");
      return 1;
    }
  }
  int status;
  waitpid(pid, &status, 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("bytes=%llu seconds=%.4f mbps=%.1f\n", total, secs, total / secs / 1e6);
  free(buf);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
