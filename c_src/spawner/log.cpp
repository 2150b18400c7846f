#include "log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>

namespace corral::spawner {

void logf(const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "corral_spawner[%d]: %s\n", static_cast<int>(getpid()), line);
}

bool owner_gone_error(int err) {
  if (err < 0) err = -err;
  return err == EPIPE || err == ECONNRESET;
}

}  // namespace corral::spawner
