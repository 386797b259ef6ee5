# Project-prefixed includes: a library's public headers are included as "<prefix>/<header>", e.g.
# #include "sla/checkpoint/errors.h", never as a flat "errors.h" visible to every target.
#
# sla_public_headers(TARGET PREFIX DIR): a link <build>/include/<TARGET>/<PREFIX> -> DIR becomes the
# target's one public include root (each library its own root, so a target sees only the prefixes
# of what it links). Installed, the headers of DIR go to include/sla_toolkit/<PREFIX>.
# Files include headers of their own folder plainly ("x.h").
function(sla_public_headers target prefix dir)
  set(root ${PROJECT_BINARY_DIR}/include/${target})
  get_filename_component(parent ${root}/${prefix} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  file(CREATE_LINK ${dir} ${root}/${prefix} SYMBOLIC)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${root}>)
  set_property(TARGET ${target} APPEND PROPERTY SLA_PUBLIC_HEADERS "${prefix}=${dir}")
endfunction()

# The include root of a target, for the rare target that compiles a library's sources itself
# (the fuzz builds) instead of linking it.
function(sla_include_root_of target out)
  set(${out} ${PROJECT_BINARY_DIR}/include/${target} PARENT_SCOPE)
endfunction()
