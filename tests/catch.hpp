// One include for Catch2 v2 (Debian 12) and v3 (the GPU machine).
#pragma once
// c10's logging header defines a glog-style CHECK macro that silently replaces Catch2's CHECK
// when it is included later (the assertion then never reaches Catch). Include it first, drop its
// CHECK, and let Catch2 define its own; the header guard keeps it from coming back.
#if __has_include(<c10/util/Logging.h>)
#include <c10/util/Logging.h>
#undef CHECK
#endif
#include <string>
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
using Catch::Approx;  // v2 has Approx at global scope
#define SLA_CATCH_V3 1
#else
#include <catch2/catch.hpp>
#endif

namespace sla::test {
// A matcher for "the string contains this text", under its v2 or v3 name.
inline auto contains_text(const std::string& text) {
#ifdef SLA_CATCH_V3
  return Catch::Matchers::ContainsSubstring(text);
#else
  return Catch::Matchers::Contains(text);
#endif
}
}  // namespace sla::test
