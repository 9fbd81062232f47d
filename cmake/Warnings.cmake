# Warning flags for the project's own targets (third-party headers are SYSTEM includes).
add_library(vmimport_warnings INTERFACE)
target_compile_options(vmimport_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wimplicit-fallthrough
  # GCC 12 flags designated initializers that leave members to their defaults.
  -Wno-missing-field-initializers)
if(VMIMPORT_WERROR)
  target_compile_options(vmimport_warnings INTERFACE -Werror)
endif()
if(VMIMPORT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS)
  add_link_options(-fsanitize=address,undefined)
endif()
if(VMIMPORT_TSAN)
  if(VMIMPORT_SANITIZE)
    message(FATAL_ERROR "VMIMPORT_TSAN and VMIMPORT_SANITIZE cannot be combined (separate builds)")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS)
  add_link_options(-fsanitize=thread)
endif()
