// Helpers shared by the fuzz targets: a fatal invariant check, and JSON text to a
// google.protobuf.Struct the way a client's JSON filters reach the server.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "nlohmann/json.hpp"

// Aborts (which libFuzzer records as a crash, with the input) when `condition` is false.
// Unlike assert() it is active in Release builds.
#define FUZZ_CHECK(condition, ...)                                                             \
  do {                                                                                         \
    if (!(condition)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #condition); \
      ::exportd::fuzz::PrintContext(__VA_ARGS__);                                              \
      std::abort();                                                                            \
    }                                                                                          \
  } while (false)

namespace exportd::fuzz {

inline void PrintContext() {}
inline void PrintContext(std::string_view what) {
  std::fprintf(stderr, "  %.*s\n", static_cast<int>(what.size()), what.data());
}
inline void PrintContext(std::string_view label, std::string_view value) {
  std::fprintf(stderr, "  %.*s: %.*s\n", static_cast<int>(label.size()), label.data(),
               static_cast<int>(value.size()), value.data());
}

// protobuf logs every rejected parse (e.g. invalid UTF-8 in a string field); the fuzzer
// rejects millions of inputs, so those lines are noise.
inline void SilenceProtobufLogs() { google::protobuf::SetLogHandler(nullptr); }

// Converts a JSON value to a google.protobuf.Value: numbers become doubles, as they do when a
// client's JSON (or any protobuf JSON parser) fills a Struct.
inline void ToValue(const nlohmann::json& json, google::protobuf::Value* value) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      value->set_null_value(google::protobuf::NULL_VALUE);
      break;
    case nlohmann::json::value_t::boolean:
      value->set_bool_value(json.get<bool>());
      break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      value->set_number_value(json.get<double>());
      break;
    case nlohmann::json::value_t::string:
      value->set_string_value(json.get<std::string>());
      break;
    case nlohmann::json::value_t::array: {
      google::protobuf::ListValue* list = value->mutable_list_value();
      for (const nlohmann::json& item : json) ToValue(item, list->add_values());
      break;
    }
    case nlohmann::json::value_t::object: {
      google::protobuf::Struct* object = value->mutable_struct_value();
      for (const auto& [key, item] : json.items()) ToValue(item, &(*object->mutable_fields())[key]);
      break;
    }
    default:
      value->set_null_value(google::protobuf::NULL_VALUE);
      break;
  }
}

// The deepest nesting of arrays and objects in a JSON text (brackets inside strings skipped).
inline int JsonDepth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// The Struct of a JSON object text; nullopt when the text is not JSON, not an object, or
// nested deeper than 64 levels (protobuf itself refuses messages nested 100 deep).
inline std::optional<google::protobuf::Struct> JsonToStruct(std::string_view text) {
  if (JsonDepth(text) > 64) return std::nullopt;
  const nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                                    /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  google::protobuf::Value value;
  ToValue(json, &value);
  return std::move(*value.mutable_struct_value());
}

}  // namespace exportd::fuzz
