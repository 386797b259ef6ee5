// GPU test executables exit with this code when no CUDA device is present; CTest reports the
// test as skipped (SKIP_RETURN_CODE), never as passed.
#pragma once
inline constexpr int kSkipNoGpu = 77;
