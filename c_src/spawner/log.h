// The spawner's log: its stderr, which is the VM's. Only what an operator
// must act on goes there; an owner that goes away mid-spawn is normal.
#pragma once

namespace corral::spawner {

// One line "corral_spawner[pid]: ..." on stderr.
void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// An error from sending to a control socket that only says its owner is
// gone (EPIPE, ECONNRESET): nothing to log. err is -errno or errno.
bool owner_gone_error(int err);

}  // namespace corral::spawner
