// A frame's wire form (header fields and payload), read back through
// corral::frame::encode, so that the fuzz targets and the end-to-end check
// depend only on encode/decode/recv_frame and the Header layout, not on
// how frames are represented in code.
#pragma once

#include <cstring>
#include <string>
#include <string_view>

#include "frame.h"

namespace corral::fuzz {

struct Wire {
  frame::Header h{};
  std::string payload;
};

inline Wire wire_of(const frame::Frame& f) {
  std::string bytes;
  frame::encode(f, bytes);
  Wire w;
  std::memcpy(&w.h, bytes.data(), sizeof w.h);
  w.payload = bytes.substr(sizeof w.h);
  return w;
}

inline std::string wire_bytes(uint32_t type, uint32_t flags, int64_t a, int64_t b,
                              std::string_view payload) {
  frame::Header h{type, flags, a, b};
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(payload);
  return out;
}

}  // namespace corral::fuzz
