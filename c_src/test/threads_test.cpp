// The shared pieces that run on several threads at once: frames (the
// driver sends and receives them on every scheduler thread) and child starts
// (the stack pool is shared). `make ctest-tsan` runs the frame test under
// ThreadSanitizer, which reports any unsynchronised access; not the child
// starts, which TSan cannot follow (a CLONE_VM child, see the Makefile).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "child.h"
#include "fd.h"
#include "frame.h"
#include "spawn_support.h"

namespace corral {
namespace {

constexpr int kThreads = 4;

TEST(Threads, FramesOnManySocketsAtOnce) {
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([t, &bad] {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        bad++;
        return;
      }
      unique_fd a(sv[0]), b(sv[1]);
      for (int i = 0; i < 500; i++) {
        std::string stage = "stage" + std::to_string(t) + "." + std::to_string(i);
        if (frame::send_frame(a.get(), frame::ErrorFrame{i + 1, stage, {}}) != 0) bad++;
        frame::Frame f;
        std::vector<int> fds;
        if (frame::recv_frame(b.get(), f, fds) != 1) {
          bad++;
          continue;
        }
        auto* e = std::get_if<frame::ErrorFrame>(&f);
        if (!e || e->err != i + 1 || e->stage != stage) bad++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Threads, ChildStartsOnManyThreadsShareTheStackPool) {
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([t, &bad] {
      for (int i = 0; i < 10; i++) {
        spawner::SpawnSpec s;
        s.path = "/bin/sh";
        s.argv = {"sh", "-c", "exit " + std::to_string(t + i)};
        s.in = spawner::StdinMode::Null;
        s.out = spawner::StdoutMode::Null;
        s.err = spawner::StderrMode::Null;
        spawner::SpawnResult r = spawner::spawn_child(s);
        if (!r.ok) {
          bad++;
          continue;
        }
        int st = 0;
        while (waitpid(r.child.pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != t + i) bad++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace corral
