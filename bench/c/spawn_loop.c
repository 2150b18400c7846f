/* Baseline for the spawn-latency benchmark: posix_spawn + waitpid, N times.
 *
 *   spawn_loop N WARMUP PROGRAM
 *
 * Prints "median_us=<f> p90_us=<f>" over the N timed runs. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int run_once(char *prog) {
  char *argv[] = {prog, NULL};
  pid_t pid;
  if (posix_spawn(&pid, prog, NULL, NULL, argv, environ) != 0) return -1;
  int status;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s N WARMUP PROGRAM\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[1]), warmup = atoi(argv[2]);
  if (n <= 0 || warmup < 0) return 2;
  double *t = malloc(sizeof *t * (size_t)n);
  if (!t) return 1;
  for (int i = 0; i < warmup; i++)
    if (run_once(argv[3]) != 0) return 1;
  for (int i = 0; i < n; i++) {
    double t0 = now_us();
    if (run_once(argv[3]) != 0) return 1;
    t[i] = now_us() - t0;
  }
  qsort(t, (size_t)n, sizeof *t, cmp);
  printf("median_us=%.1f p90_us=%.1f\n", t[n / 2], t[(n * 9) / 10]);
  free(t);
  return 0;
}
