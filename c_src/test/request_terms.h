// Builds spawn request terms (term_to_binary of an option map): each Enc
// writes one term into an ei_x_buff. The one request encoder of the C++
// tests (the decoder's, the end-to-end harness's, spawn_support.h) and of
// the fuzz build (c_src/fuzz); header-only, needing only ei.h.
#pragma once

#include <ei.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace corral::spawner::terms {

using Enc = std::function<void(ei_x_buff*)>;

// An ei_x_buff with the version byte, freed on destruction.
class Term {
 public:
  Term() { ei_x_new_with_version(&x_); }
  ~Term() { ei_x_free(&x_); }
  Term(const Term&) = delete;
  Term& operator=(const Term&) = delete;
  ei_x_buff* x() { return &x_; }
  std::string bytes() const { return std::string(x_.buff, static_cast<size_t>(x_.index)); }

 private:
  ei_x_buff x_;
};

inline Enc bin(const std::string& s) {
  return [s](ei_x_buff* x) { ei_x_encode_binary(x, s.data(), static_cast<int>(s.size())); };
}
inline Enc atom(const std::string& a) {
  return [a](ei_x_buff* x) { ei_x_encode_atom(x, a.c_str()); };
}
inline Enc lng(long v) {
  return [v](ei_x_buff* x) { ei_x_encode_long(x, v); };
}
inline Enc bins(const std::vector<std::string>& v) {
  return [v](ei_x_buff* x) {
    if (!v.empty()) {
      ei_x_encode_list_header(x, static_cast<long>(v.size()));
      for (const auto& s : v) ei_x_encode_binary(x, s.data(), static_cast<int>(s.size()));
    }
    ei_x_encode_empty_list(x);
  };
}
inline Enc list(const std::vector<Enc>& v) {
  return [v](ei_x_buff* x) {
    if (!v.empty()) {
      ei_x_encode_list_header(x, static_cast<long>(v.size()));
      for (const auto& e : v) e(x);
    }
    ei_x_encode_empty_list(x);
  };
}
inline Enc tuple(const std::vector<Enc>& v) {
  return [v](ei_x_buff* x) {
    ei_x_encode_tuple_header(x, static_cast<long>(v.size()));
    for (const auto& e : v) e(x);
  };
}

using Entries = std::vector<std::pair<std::string, Enc>>;

inline std::string map_term(const Entries& entries) {
  Term t;
  ei_x_encode_map_header(t.x(), static_cast<long>(entries.size()));
  for (const auto& [k, enc] : entries) {
    ei_x_encode_atom(t.x(), k.c_str());
    enc(t.x());
  }
  return t.bytes();
}

// A spawn request, as src/corral_opts.erl would encode it (a subset).
struct Request {
  std::string path;
  std::vector<std::string> argv;
  std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  long kill_timeout = -1;  // -1: leave out
  const char* stderr_mode = nullptr;
  long report_delay = 0;  // ms; 0: leave out
};

// term_to_binary of the request map.
inline std::string encode(const Request& r) {
  Entries e = {{"path", bin(r.path)}, {"argv", bins(r.argv)}, {"env", bins(r.env)}};
  if (r.kill_timeout >= 0) e.emplace_back("kill_timeout", lng(r.kill_timeout));
  if (r.stderr_mode) e.emplace_back("stderr", atom(r.stderr_mode));
  if (r.report_delay > 0) e.emplace_back("report_delay", lng(r.report_delay));
  return map_term(e);
}

}  // namespace corral::spawner::terms
