// Owning file descriptor wrapper, shared by the spawner and its tests.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <utility>

namespace corral {

// Owns one file descriptor; closes it on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(o.release()) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Moves fd to the lowest free number at or above floor (close-on-exec), best
// effort: it stays where it is if it already lies there or cannot move.
inline void move_above(unique_fd& fd, int floor) {
  if (!fd || fd.get() >= floor) return;
  int high = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, floor);
  if (high >= 0) fd.reset(high);
}

}  // namespace corral
