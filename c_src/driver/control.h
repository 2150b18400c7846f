// Parsing of port_control payloads (include/corral_protocol.hrl's OP_*,
// through the header CMake generates from it: c_src/protocol.cmake), apart
// from the driver so that the unit tests and the control fuzz target
// (c_src/fuzz/control_fuzz.cpp) run it without a VM. The payloads are made
// by src/corral.erl in native byte order.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "corral_protocol.h"

namespace corral::driver {

// A port_control call, parsed. Which fields are set depends on op.
struct Control {
  unsigned op = 0;
  uint64_t num = 0;       // ACK: bytes; SET_WINDOW, SPAWN: the window
  int32_t sig = 0;        // SIGNAL
  std::string_view path;  // SPAWN: the spawner's path
  std::string_view term;  // SPAWN: term_to_binary(request); CGROUP_V1: the request
};

// Parses the payload of op. 0 and out filled, or EINVAL for an unknown op
// or a payload that is not that op's (wrong size, a zero window, a path
// longer than the payload, a signal outside 0..64).
//   SPAWN       <<Window:64, PathLen:32, Path:PathLen/bytes, Term/bytes>>
//   ACK         <<Bytes:64>>
//   SET_WINDOW  <<Bytes:64>>, not 0
//   SIGNAL      <<Signal:32/signed>>, 0..64 (0 probes, as kill(2))
//   CGROUP_V1   a request of common/cgroup_table.h's serve(), in term
//   the others  anything (ignored)
inline int parse_control(unsigned op, std::string_view buf, Control& out) {
  out = Control{};
  out.op = op;
  auto u64 = [&](uint64_t& v) {
    if (buf.size() != sizeof v) return false;
    std::memcpy(&v, buf.data(), sizeof v);
    return true;
  };
  switch (op) {
    case protocol::OP_SPAWN: {
      uint32_t plen;
      if (buf.size() < 12) return EINVAL;
      std::memcpy(&out.num, buf.data(), 8);
      std::memcpy(&plen, buf.data() + 8, 4);
      if (out.num == 0 || plen > buf.size() - 12) return EINVAL;
      out.path = buf.substr(12, plen);
      out.term = buf.substr(12 + static_cast<size_t>(plen));
      return 0;
    }
    case protocol::OP_ACK:
      return u64(out.num) ? 0 : EINVAL;
    case protocol::OP_SET_WINDOW:
      return u64(out.num) && out.num != 0 ? 0 : EINVAL;
    case protocol::OP_SIGNAL:
      if (buf.size() != sizeof out.sig) return EINVAL;
      std::memcpy(&out.sig, buf.data(), sizeof out.sig);
      return out.sig >= 0 && out.sig <= 64 ? 0 : EINVAL;
    case protocol::OP_CGROUP_V1:
      out.term = buf;
      return 0;
    case protocol::OP_CLOSE_STDIN:
    case protocol::OP_STOP:
    case protocol::OP_STATS:
    case protocol::OP_OSPID:
    case protocol::OP_CGROUPS:
      return 0;
    default:
      return EINVAL;
  }
}

}  // namespace corral::driver
