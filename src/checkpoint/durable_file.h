// Replaces a file atomically and durably: a temp file in the target's folder (O_EXCL, mode 0600),
// write, fsync, validate the temp through the caller's reader, give it the target's mode (or the
// umask default), rename over the target, fsync the folder. On any failure before the rename the
// temp is removed and the target is untouched. Writing over the input we read from is safe: the
// input is never opened for writing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace sla::checkpoint {

// validate(temp_path) throws to reject the written bytes. Failures throw CheckpointError E_WRITE
// naming the path and the cause. new_file_mode, when given, is the mode of a target that does not
// exist yet (e.g. 0600 for a secret); otherwise the umask default applies.
void write_file_durably(const std::string& path, const uint8_t* data, size_t size,
                        const std::function<void(const std::string& temp_path)>& validate,
                        std::optional<unsigned> new_file_mode = std::nullopt);

// A fresh temp path beside path for a write that ends in a rename onto it:
// "<folder>/.<name>.<16 random hex>.tmp". The one temp-name generator of the project (the durable
// write, the Hub cache's symlinks, the Hub server's uploads), so one test tells leftovers apart.
// Create it with O_EXCL (or symlink(), which fails on an existing name) all the same.
std::string durable_temp_path(const std::string& path);

// Whether a folder entry is a temp file named by durable_temp_path, left by a write that was
// killed midway (".<target name>.<16 hex>.tmp"), so that owners of a folder can sweep such leftovers.
bool is_durable_temp_name(std::string_view name);

}  // namespace sla::checkpoint
