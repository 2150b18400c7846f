// The C++ baseline of the spawn-latency scenario: Boost.Process spawns
// PROGRAM with its stdout on a pipe, reads the pipe to EOF and waits for the
// exit, N times: what cmd/3 does for each call.
//
//   spawn_read N WARMUP PROGRAM
//
// Prints "median_us=<f> p90_us=<f>" over the N timed runs, as spawn_loop.c.
#include <algorithm>
#include <boost/process.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iterator>
#include <string>
#include <vector>

namespace bp = boost::process;

static bool run_once(const std::string &prog, std::string &sink) {
  bp::ipstream out;
  bp::child child(bp::exe = prog, bp::std_out > out);
  sink.assign(std::istreambuf_iterator<char>(out), std::istreambuf_iterator<char>());
  child.wait();
  return child.exit_code() == 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s N WARMUP PROGRAM\n", argv[0]);
    return 2;
  }
  const int n = std::atoi(argv[1]), warmup = std::atoi(argv[2]);
  if (n <= 0 || warmup < 0) return 2;
  const std::string prog = argv[3];
  std::string sink;
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  try {
    for (int i = 0; i < warmup; i++)
      if (!run_once(prog, sink)) return 1;
    for (int i = 0; i < n; i++) {
      const auto t0 = std::chrono::steady_clock::now();
      if (!run_once(prog, sink)) return 1;
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
  } catch (const std::exception &e) {
    std::fprintf(stderr, "spawn_read: %s\n", e.what());
    return 1;
  }
  std::sort(us.begin(), us.end());
  std::printf("median_us=%.1f p90_us=%.1f\n", us[us.size() / 2], us[us.size() * 9 / 10]);
  return 0;
}
