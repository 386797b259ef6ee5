// Replaces a file atomically and durably: a temp file in the target's folder (O_EXCL, mode 0600),
// write, fsync, validate the temp through the caller's reader, give it the target's mode (or the
// umask default), rename over the target, fsync the folder. On any failure before the rename the
// temp is removed and the target is untouched. Writing over the input we read from is safe: the
// input is never opened for writing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace slackpt {

// validate(temp_path) throws to reject the written bytes. Failures throw CheckpointError E_WRITE
// naming the path and the cause.
void write_file_durably(const std::string& path, const uint8_t* data, size_t size,
                        const std::function<void(const std::string& temp_path)>& validate);

}  // namespace slackpt
