// port_control payload parsing (driver/control.h), as src/corral.erl makes
// the payloads: native byte order.
#include "control.h"

#include <gtest/gtest.h>

#include <string>

namespace corral::driver {
namespace {

template <typename T>
std::string bytes(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string spawn_payload(uint64_t window, const std::string& path, const std::string& term,
                          uint32_t plen) {
  return bytes(window) + bytes(plen) + path + term;
}

TEST(Control, SpawnSplitsPathAndTerm) {
  Control c;
  std::string buf = spawn_payload(4096, "/priv/corral_spawner", "\x83t", 20);
  ASSERT_EQ(parse_control(protocol::OP_SPAWN, buf, c), 0);
  EXPECT_EQ(c.num, 4096u);
  EXPECT_EQ(c.path, "/priv/corral_spawner");
  EXPECT_EQ(c.term, "\x83t");
}

TEST(Control, SpawnRefusesShortPayloadsZeroWindowsAndLongPaths) {
  Control c;
  EXPECT_EQ(parse_control(protocol::OP_SPAWN, std::string(11, '\1'), c), EINVAL);
  EXPECT_EQ(parse_control(protocol::OP_SPAWN, spawn_payload(0, "/p", "t", 2), c), EINVAL);
  EXPECT_EQ(parse_control(protocol::OP_SPAWN, spawn_payload(1, "/p", "", 3), c), EINVAL);
  // A length that would wrap 12 + PathLen around on 32 bits.
  EXPECT_EQ(parse_control(protocol::OP_SPAWN, spawn_payload(1, "/p", "", 0xFFFFFFF8u), c), EINVAL);
  ASSERT_EQ(parse_control(protocol::OP_SPAWN, spawn_payload(1, "/p", "", 2), c), 0);
  EXPECT_EQ(c.term, "");
}

TEST(Control, NumbersMustBeExactlyTheirSize) {
  Control c;
  EXPECT_EQ(parse_control(protocol::OP_ACK, bytes(uint64_t{7}), c), 0);
  EXPECT_EQ(c.num, 7u);
  EXPECT_EQ(parse_control(protocol::OP_ACK, bytes(uint32_t{7}), c), EINVAL);
  EXPECT_EQ(parse_control(protocol::OP_ACK, bytes(uint64_t{7}) + "x", c), EINVAL);
  EXPECT_EQ(parse_control(protocol::OP_SET_WINDOW, bytes(uint64_t{0}), c), EINVAL);
  EXPECT_EQ(parse_control(protocol::OP_SET_WINDOW, bytes(uint64_t{1} << 40), c), 0);
  EXPECT_EQ(c.num, uint64_t{1} << 40);
}

TEST(Control, SignalsAreZeroTo64) {
  Control c;
  for (int32_t s : {0, 1, 15, 64}) {
    EXPECT_EQ(parse_control(protocol::OP_SIGNAL, bytes(s), c), 0) << s;
    EXPECT_EQ(c.sig, s);
  }
  for (int32_t s : {-1, 65, INT32_MIN})
    EXPECT_EQ(parse_control(protocol::OP_SIGNAL, bytes(s), c), EINVAL) << s;
  EXPECT_EQ(parse_control(protocol::OP_SIGNAL, bytes(int64_t{15}), c), EINVAL);
}

TEST(Control, UnknownOpsAreRefusedPayloadlessOnesTakeAnything) {
  Control c;
  for (unsigned op : {0u, protocol::kHighestOp + 1, 255u, 0xFFFFFFFFu})
    EXPECT_EQ(parse_control(op, "", c), EINVAL) << op;
  for (unsigned op : {protocol::OP_CLOSE_STDIN, protocol::OP_STOP, protocol::OP_STATS,
                      protocol::OP_OSPID, protocol::OP_CGROUPS})
    EXPECT_EQ(parse_control(op, "junk", c), 0) << op;
  // CGROUP_V1 keeps its payload: the request for cgroup_table::serve.
  ASSERT_EQ(parse_control(protocol::OP_CGROUP_V1, std::string_view("G\0memory.max", 12), c), 0);
  EXPECT_EQ(c.term, std::string_view("G\0memory.max", 12));
}

}  // namespace
}  // namespace corral::driver
