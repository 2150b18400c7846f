// The states of one corral_drv port, and which moves between them are legal.
// Kept apart from corral_drv.cpp (no erl_driver.h here) so that the table
// can be unit-tested.
//
// Phase: where the port is in the child's life.
//
//   Idle ──SPAWN sent──▶ Spawning ──Fds frame──▶ Running
//                          │  │                   │
//                          │  └─malformed frame─▶ FdsLost (Stop sent: the
//                          │                      │  child runs, but its pipes
//                          │                      │  were dropped)
//                          ├──────────────────────┴──────── ctl EOF, no Exit ─▶ JudgingLoss
//                          │                                                     │
//           Exit / Error frame (from Spawning, Running or FdsLost) ──▶ Draining ◀┘ judged
//                                                                      │  (spawner_died or
//                                                  stdout and stderr at EOF    spawner_dropped)
//                                                                      ▼
//                                                                  Terminated
//
//   Idle        no child yet; SPAWN is the only useful command.
//   Spawning    the Spawn frame went out on the control socket; waiting for
//               Fds (or Error). stdin bytes queue up.
//   Running     the pipes are ours: output flows under the credit window,
//               stdin is written.
//   FdsLost     an Fds frame arrived without its fds (our fd table was full):
//               we asked the spawner to stop the child; its Exit ends the
//               port with {error, {emfile, spawn}}.
//   JudgingLoss the control socket ended before any Exit: we killed the
//               group and the leaf, and look (on a timer) whether the
//               spawner died or merely dropped us.
//   Draining    the outcome is known (Exit status, Error, or the loss);
//               what is left in stdout and stderr is still delivered.
//   Terminated  the one terminal message went out; the port is closing.
//
// Signal and Stop reach the spawner only from Spawning, Running and FdsLost:
// the control socket is open there and no outcome is known yet.
//
// Stdin: whether bytes written to the port still go anywhere. Orthogonal to
// the phase: a child may close its stdin long before it exits, and the
// owner may close it before the pipe even arrives.
//
//   Open ──close_stdin──▶ Closing ──queue empty, pipe here──▶ Closed
//     └──────────── EPIPE, or no stdin pipe ─────────────────────▲
//
//   Open     writes are queued (and flushed once the pipe is here).
//   Closing  close requested: later writes are dropped; the queue is
//            flushed, then the pipe closes.
//   Closed   no pipe any more (closed, broken, or never asked for):
//            writes are dropped.
#pragma once

#include <cstdint>

namespace corral::driver {

enum class Phase : uint8_t { Idle, Spawning, Running, FdsLost, JudgingLoss, Draining, Terminated };

enum class Stdin : uint8_t { Open, Closing, Closed };

constexpr bool legal(Phase from, Phase to) {
  switch (from) {
    case Phase::Idle:
      return to == Phase::Spawning;
    case Phase::Spawning:
      return to == Phase::Running || to == Phase::FdsLost || to == Phase::JudgingLoss ||
             to == Phase::Draining;
    case Phase::Running:
    case Phase::FdsLost:
      return to == Phase::JudgingLoss || to == Phase::Draining;
    case Phase::JudgingLoss:
      return to == Phase::Draining;
    case Phase::Draining:
      return to == Phase::Terminated;
    case Phase::Terminated:
      return false;
  }
  return false;
}

constexpr bool legal(Stdin from, Stdin to) {
  switch (from) {
    case Stdin::Open:
      return to == Stdin::Closing || to == Stdin::Closed;
    case Stdin::Closing:
      return to == Stdin::Closed;
    case Stdin::Closed:
      return false;
  }
  return false;
}

// Whether the child may still be running with our control socket open, so
// that Signal and Stop frames can reach it.
constexpr bool signalable(Phase p) {
  return p == Phase::Spawning || p == Phase::Running || p == Phase::FdsLost;
}

constexpr const char* name(Phase p) {
  switch (p) {
    case Phase::Idle:
      return "Idle";
    case Phase::Spawning:
      return "Spawning";
    case Phase::Running:
      return "Running";
    case Phase::FdsLost:
      return "FdsLost";
    case Phase::JudgingLoss:
      return "JudgingLoss";
    case Phase::Draining:
      return "Draining";
    case Phase::Terminated:
      return "Terminated";
  }
  return "?";
}

constexpr const char* name(Stdin s) {
  switch (s) {
    case Stdin::Open:
      return "Open";
    case Stdin::Closing:
      return "Closing";
    case Stdin::Closed:
      return "Closed";
  }
  return "?";
}

}  // namespace corral::driver
