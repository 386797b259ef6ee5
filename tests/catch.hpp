// One include for Catch2 v2 (Debian 12) and v3 (the GPU machine).
#pragma once
// c10's logging header defines a glog-style CHECK macro that silently replaces Catch2's CHECK
// when it is included later (the assertion then never reaches Catch). Include it first, drop its
// CHECK, and let Catch2 define its own; the header guard keeps it from coming back.
#if __has_include(<c10/util/Logging.h>)
#include <c10/util/Logging.h>
#undef CHECK
#endif
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
