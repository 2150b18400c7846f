// Tests for decode_spawn_spec: valid maps, every rejection, and fuzzed input.
#include "options.h"

#include <ei.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "request_terms.h"

namespace corral::spawner {
namespace {

using namespace terms;

Entries minimal() {
  return {{"path", bin("/bin/echo")}, {"argv", bins({"echo", "hi"})}, {"env", bins({})}};
}

// Decodes from an exact-size heap copy, so ASan catches any overread.
bool decode(const std::string& bytes, SpawnSpec& spec, std::string& err) {
  std::unique_ptr<char[]> copy(new char[bytes.empty() ? 1 : bytes.size()]);
  if (!bytes.empty()) memcpy(copy.get(), bytes.data(), bytes.size());
  return decode_spawn_spec(std::string_view(copy.get(), bytes.size()), spec, err);
}

std::string decode_error(const std::string& bytes) {
  SpawnSpec spec;
  std::string err;
  EXPECT_FALSE(decode(bytes, spec, err));
  EXPECT_FALSE(err.empty());
  return err;
}

Entries with(Entries e, const std::string& key, const Enc& v) {
  for (auto& [k, enc] : e) {
    if (k == key) {
      enc = v;
      return e;
    }
  }
  e.emplace_back(key, v);
  return e;
}

Entries without(Entries e, const std::string& key) {
  std::erase_if(e, [&](const auto& p) { return p.first == key; });
  return e;
}

TEST(Options, DecodesEveryField) {
  std::string bytes = map_term({
      {"path", bin("/bin/sh")},
      {"argv", bins({"sh", "-c", "echo $FOO"})},
      {"env", bins({"FOO=bar", "EMPTY=", "X=a=b"})},
      {"cd", bin("/tmp")},
      {"stdin", atom("null")},
      {"stdout", atom("pipe")},
      {"stderr", atom("stdout")},
      {"kill_timeout", lng(250)},
      {"stop_signal", lng(2)},
      {"pipe_size", lng(1 << 20)},
  });
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode(bytes, s, err)) << err;
  EXPECT_EQ(s.path, "/bin/sh");
  EXPECT_EQ(s.argv, (std::vector<std::string>{"sh", "-c", "echo $FOO"}));
  EXPECT_EQ(s.env, (std::vector<std::string>{"FOO=bar", "EMPTY=", "X=a=b"}));
  ASSERT_TRUE(s.cd.has_value());
  EXPECT_EQ(*s.cd, "/tmp");
  EXPECT_EQ(s.in, StdinMode::Null);
  EXPECT_EQ(s.out, StdoutMode::Pipe);
  EXPECT_EQ(s.err, StderrMode::Stdout);
  EXPECT_EQ(s.kill_timeout_ms, 250);
  EXPECT_EQ(s.stop_signal, 2);
  EXPECT_EQ(s.pipe_size, 1 << 20);
}

TEST(Options, DefaultsForOptionalKeys) {
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode(map_term(minimal()), s, err)) << err;
  EXPECT_EQ(s.path, "/bin/echo");
  EXPECT_EQ(s.argv, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_TRUE(s.env.empty());
  EXPECT_FALSE(s.cd.has_value());
  EXPECT_EQ(s.in, StdinMode::Pipe);
  EXPECT_EQ(s.out, StdoutMode::Pipe);
  EXPECT_EQ(s.err, StderrMode::Pipe);
  EXPECT_EQ(s.kill_timeout_ms, 5000);
  EXPECT_EQ(s.stop_signal, 15);
  EXPECT_EQ(s.pipe_size, 0);
}

TEST(Options, OtherModesAndCdUndefined) {
  auto e = with(minimal(), "cd", atom("undefined"));
  e = with(e, "stdin", atom("pipe"));
  e = with(e, "stdout", atom("null"));
  e = with(e, "stderr", atom("null"));
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode(map_term(e), s, err)) << err;
  EXPECT_FALSE(s.cd.has_value());
  EXPECT_EQ(s.in, StdinMode::Pipe);
  EXPECT_EQ(s.out, StdoutMode::Null);
  EXPECT_EQ(s.err, StderrMode::Null);
}

TEST(Options, IntegerEncodings) {
  // 7: SMALL_INTEGER_EXT, 100000: INTEGER_EXT, 2^40: SMALL_BIG_EXT.
  for (long v : {0L, 7L, 100000L, 1L << 40}) {
    SpawnSpec s;
    std::string err;
    ASSERT_TRUE(decode(map_term(with(minimal(), "kill_timeout", lng(v))), s, err)) << err;
    EXPECT_EQ(s.kill_timeout_ms, v);
  }
}

TEST(Options, KeysInAnyOrder) {
  Entries e = {
      {"env", bins({"A=1"})}, {"stderr", atom("pipe")}, {"argv", bins({"x"})}, {"path", bin("/x")}};
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode(map_term(e), s, err)) << err;
  EXPECT_EQ(s.path, "/x");
  EXPECT_EQ(s.env, std::vector<std::string>{"A=1"});
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* expect;  // substring of the error
};

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> v;
  auto m = minimal();
  {
    Term t;
    ei_x_encode_list_header(t.x(), 1);
    ei_x_encode_atom(t.x(), "path");
    ei_x_encode_empty_list(t.x());
    v.push_back({"not a map", t.bytes(), "not a map"});
  }
  v.push_back({"unknown key", map_term(with(m, "colour", atom("red"))), "colour: unknown key"});
  v.push_back({"path atom", map_term(with(m, "path", atom("sh"))), "path: not a binary"});
  v.push_back({"path relative", map_term(with(m, "path", bin("bin/sh"))), "path: not absolute"});
  v.push_back({"path NUL", map_term(with(m, "path", bin(std::string("/bin\0x", 6)))),
               "path: contains a NUL"});
  v.push_back({"argv NUL", map_term(with(m, "argv", bins({"a", std::string("b\0c", 3)}))),
               "argv: element 2 contains a NUL byte"});
  v.push_back({"argv empty", map_term(with(m, "argv", bins({}))), "argv: empty"});
  v.push_back({"argv string",
               map_term(with(m, "argv", [](ei_x_buff* x) { ei_x_encode_string(x, "abc"); })),
               "argv: not a list"});
  v.push_back({"argv atoms",
               map_term(with(m, "argv",
                             [](ei_x_buff* x) {
                               ei_x_encode_list_header(x, 1);
                               ei_x_encode_atom(x, "sh");
                               ei_x_encode_empty_list(x);
                             })),
               "argv: element 1 is not a binary"});
  v.push_back({"argv improper",
               map_term(with(m, "argv",
                             [](ei_x_buff* x) {
                               ei_x_encode_list_header(x, 1);
                               ei_x_encode_binary(x, "sh", 2);
                               ei_x_encode_binary(x, "tail", 4);
                             })),
               "argv: not a proper list"});
  v.push_back({"env no =", map_term(with(m, "env", bins({"A=1", "NOEQUALS"}))),
               "env: element 2 has no '='"});
  v.push_back({"env empty name", map_term(with(m, "env", bins({"=x"}))), "env: element 1"});
  v.push_back({"env NUL", map_term(with(m, "env", bins({std::string("A=\0", 3)}))),
               "env: element 1 contains a NUL"});
  v.push_back({"env binary", map_term(with(m, "env", bin("A=1"))), "env: not a list"});
  v.push_back({"missing path", map_term(without(m, "path")), "path: missing"});
  v.push_back({"missing argv", map_term(without(m, "argv")), "argv: missing"});
  v.push_back({"missing env", map_term(without(m, "env")), "env: missing"});
  v.push_back({"cd integer", map_term(with(m, "cd", lng(1))), "cd: "});
  v.push_back({"cd other atom", map_term(with(m, "cd", atom("home"))), "cd: "});
  v.push_back({"cd NUL", map_term(with(m, "cd", bin(std::string("/\0", 2)))), "cd: "});
  v.push_back({"stdin bad", map_term(with(m, "stdin", atom("stdout"))), "stdin: not pipe or null"});
  v.push_back({"stdout bad", map_term(with(m, "stdout", bin("pipe"))), "stdout: not pipe or null"});
  v.push_back({"stderr bad", map_term(with(m, "stderr", atom("stderr"))),
               "stderr: not pipe, stdout, null or inherit"});
  v.push_back({"kill_timeout negative", map_term(with(m, "kill_timeout", lng(-1))),
               "kill_timeout: -1 out of range"});
  v.push_back({"kill_timeout binary", map_term(with(m, "kill_timeout", bin("5"))),
               "kill_timeout: not an integer"});
  v.push_back({"stop_signal 0", map_term(with(m, "stop_signal", lng(0))), "stop_signal: 0 out"});
  v.push_back({"stop_signal 65", map_term(with(m, "stop_signal", lng(65))), "stop_signal: 65"});
  v.push_back({"pipe_size huge", map_term(with(m, "pipe_size", lng(1L << 40))), "pipe_size: "});
  {
    Entries e = m;
    e.emplace_back("path", bin("/bin/true"));
    v.push_back({"duplicate", map_term(e), "path: duplicate"});
  }
  {
    Term t;
    ei_x_encode_map_header(t.x(), 1);
    ei_x_encode_binary(t.x(), "path", 4);
    ei_x_encode_binary(t.x(), "/x", 2);
    v.push_back({"binary key", t.bytes(), "map key 1 is not an atom"});
  }
  v.push_back({"trailing", map_term(m) + "x", "trailing bytes"});
  v.push_back({"bad version", std::string("\x82") + map_term(m).substr(1), "version"});
  v.push_back({"empty", std::string(), "version"});
  return v;
}

TEST(Options, RejectsMalformedTermsNamingTheKey) {
  for (const BadCase& c : bad_cases()) {
    std::string err = decode_error(c.bytes);
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << c.name << ": got '" << err << "', expected '" << c.expect << "'";
  }
}

TEST(Options, EveryTruncationFails) {
  std::string full = map_term({
      {"path", bin("/bin/sh")},
      {"argv", bins({"sh", "-c", "true"})},
      {"env", bins({"A=1"})},
      {"cd", bin("/tmp")},
      {"stderr", atom("stdout")},
      {"kill_timeout", lng(1L << 40)},
      {"stop_signal", lng(9)},
  });
  SpawnSpec s;
  std::string err;
  ASSERT_TRUE(decode(full, s, err)) << err;
  for (size_t n = 0; n < full.size(); n++) {
    err.clear();
    EXPECT_FALSE(decode(full.substr(0, n), s, err)) << "prefix of " << n << " bytes";
    EXPECT_FALSE(err.empty());
  }
}

TEST(Options, RandomBytesNeverCrash) {
  std::string valid = map_term(with(minimal(), "kill_timeout", lng(100000)));
  int accepted = 0;
  for (unsigned seed = 0; seed < 400; seed++) {
    std::mt19937 rng(seed);
    std::string bytes;
    if (seed % 2 == 0) {
      // Pure garbage, usually behind a plausible version + map header.
      size_t n = rng() % 64;
      bytes = (seed % 4 == 0) ? std::string("\x83t\0\0\0\x03", 6) : std::string();
      for (size_t i = 0; i < n; i++) bytes.push_back(static_cast<char>(rng()));
    } else {
      // A valid term with a few bytes flipped: reaches the deeper decoders.
      bytes = valid;
      for (int k = 0; k < 3; k++) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    SpawnSpec s;
    std::string err;
    if (decode(bytes, s, err)) {
      accepted++;
      EXPECT_FALSE(s.argv.empty());
      EXPECT_FALSE(s.path.empty());
    } else {
      EXPECT_FALSE(err.empty()) << "seed " << seed;
    }
  }
  EXPECT_LT(accepted, 400);
}

TEST(ResolveCd, AgainstTheVmsDirectory) {
  SpawnSpec none, rel, abs, keep;
  rel.cd.emplace("bin");
  abs.cd.emplace("/tmp");
  resolve_cd(none, "/usr");
  resolve_cd(rel, "/usr");
  resolve_cd(abs, "/usr");
  EXPECT_EQ(none.cd, "/usr");
  EXPECT_EQ(rel.cd, "/usr/bin");
  EXPECT_EQ(abs.cd, "/tmp");
  SpawnSpec root;
  root.cd.emplace("etc");
  resolve_cd(root, "/");
  EXPECT_EQ(root.cd, "/etc");
  keep.cd.emplace("rel");
  resolve_cd(keep, "");  // no directory sent: nothing changes
  EXPECT_EQ(keep.cd, "rel");
  SpawnSpec unset;
  resolve_cd(unset, "");
  EXPECT_FALSE(unset.cd.has_value());
}

}  // namespace
}  // namespace corral::spawner
