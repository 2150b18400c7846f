// libFuzzer target: the driver's port_control payload parsing
// (driver/control.h, corral::driver::parse_control).
//
// Input: byte 0 = the opcode (modulo the highest OP_* + 2, so every OP_*
// and the unknown 0 and highest + 1), the rest = the payload, placed flush
// against an unmapped page.
//
// Checked: the answer is 0 or EINVAL; what is accepted is exactly what the
// Erlang side can send (SPAWN: encoding the parsed window, path and term
// gives the payload back, with the path and term inside it; ACK and
// SET_WINDOW: 8 bytes, SET_WINDOW not 0; SIGNAL: 4 bytes, 0..64); unknown
// opcodes are refused; CGROUP_V1's request, served (cgroup_table.h), is
// answered with a table, a "+" value or a "-" error.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "cgroup_table.h"
#include "control.h"
#include "guarded.h"

using corral::driver::Control;
namespace drv = corral::driver;
namespace proto = corral::protocol;

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_accepted(unsigned op, std::string_view buf, const Control& c) {
  FUZZ_CHECK(c.op == op, "op %u parsed as %u", op, c.op);
  switch (op) {
    case proto::OP_SPAWN: {
      FUZZ_CHECK(c.num != 0, "a zero window accepted");
      FUZZ_CHECK(inside(c.path, buf) && inside(c.term, buf), "path or term outside the payload");
      uint32_t plen = static_cast<uint32_t>(c.path.size());
      std::string again(reinterpret_cast<const char*>(&c.num), 8);
      again.append(reinterpret_cast<const char*>(&plen), 4);
      again.append(c.path);
      again.append(c.term);
      FUZZ_CHECK(again == buf, "SPAWN does not encode back to its %zu bytes", buf.size());
      break;
    }
    case proto::OP_ACK:
    case proto::OP_SET_WINDOW:
      FUZZ_CHECK(buf.size() == 8, "a %zu-byte number accepted", buf.size());
      FUZZ_CHECK(std::memcmp(&c.num, buf.data(), 8) == 0, "the number changed");
      FUZZ_CHECK(op == proto::OP_ACK || c.num != 0, "a zero window accepted");
      break;
    case proto::OP_SIGNAL:
      FUZZ_CHECK(buf.size() == 4, "a %zu-byte signal accepted", buf.size());
      FUZZ_CHECK(c.sig >= 0 && c.sig <= 64, "signal %d accepted", c.sig);
      break;
    case proto::OP_CLOSE_STDIN:
    case proto::OP_STOP:
    case proto::OP_STATS:
    case proto::OP_OSPID:
    case proto::OP_CGROUPS:
      break;
    case proto::OP_CGROUP_V1: {
      FUZZ_CHECK(c.term.data() == buf.data() && c.term.size() == buf.size(), "request changed");
      std::string r = corral::cgroup_table::serve(c.term);
      FUZZ_CHECK(!r.empty() && (r[0] == '+' || r[0] == '-' || c.term == "T"), "answer %zu bytes",
                 r.size());
      break;
    }
    default:
      FUZZ_CHECK(false, "unknown op %u accepted", op);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static corral::fuzz::Guarded guarded;
  if (size == 0) return 0;
  unsigned op = data[0] % (proto::kHighestOp + 2);
  std::string_view buf = guarded.place(data + 1, size - 1);
  Control c;
  int rc = drv::parse_control(op, buf, c);
  FUZZ_CHECK(rc == 0 || rc == EINVAL, "answer %d", rc);
  if (rc == 0) check_accepted(op, buf, c);
  return 0;
}
