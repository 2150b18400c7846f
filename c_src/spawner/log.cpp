#include "log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>

namespace corral::spawner {

namespace {

void vlog(const char* suffix, const char* fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  fprintf(stderr, "corral_spawner[%d]: %s%s\n", static_cast<int>(getpid()), line, suffix);
}

}  // namespace

void logf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog("", fmt, ap);
  va_end(ap);
}

void LogOnce::operator()(const char* fmt, ...) {
  if (said_) return;
  said_ = true;
  va_list ap;
  va_start(ap, fmt);
  vlog(" (logged once; later ones are not)", fmt, ap);
  va_end(ap);
}

bool owner_gone_error(int err) {
  if (err < 0) err = -err;
  return err == EPIPE || err == ECONNRESET;
}

}  // namespace corral::spawner
