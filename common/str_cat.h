// absl::StrCat and absl::StrAppend that also take std::string_view: Debian's Abseil has an
// absl::string_view of its own, which std::string_view does not convert to.
//
//   std::string message = Cat("unknown field for ", entity.table);  // table: std::string_view
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace exportd {
namespace str_cat_internal {

inline absl::string_view Piece(std::string_view text) { return {text.data(), text.size()}; }
template <typename T>
const T& Piece(const T& value) {
  return value;
}

}  // namespace str_cat_internal

template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(str_cat_internal::Piece(args)...);
}

template <typename... Args>
void Append(std::string* out, const Args&... args) {
  absl::StrAppend(out, str_cat_internal::Piece(args)...);
}

}  // namespace exportd
