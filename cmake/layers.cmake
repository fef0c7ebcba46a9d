# Which folder's code may include which. Every folder with C++ in it declares what it uses; the
# build's `check_layers` step reads every #include of the tree against these declarations
# (scripts/check_layers.py) and fails on an arrow that was not declared, so a dependency cannot
# run back up unnoticed.
#
#   shears_layer(<folder> [USES <folder>...] [FORBIDS <tag>...])
#
# A file belongs to the deepest declared folder that holds it. USES names the folders whose
# headers it may include (its own always). FORBIDS names what may not reach it even through the
# headers it includes: torch (LibTorch's headers), grpc, proto (protobuf and the generated
# shears/v1 headers). USES * lets a folder include anything (tests, benchmarks).
function(shears_layer folder)
  cmake_parse_arguments(LAYER "" "" "USES;FORBIDS" ${ARGN})
  string(REPLACE ";" "," uses "${LAYER_USES}")
  string(REPLACE ";" "," forbids "${LAYER_FORBIDS}")
  set_property(GLOBAL APPEND PROPERTY SHEARS_LAYERS "${folder}:${uses}:${forbids}")
endfunction()

# Writes the declarations for the checker and adds it to the default build.
function(shears_check_layers)
  get_property(layers GLOBAL PROPERTY SHEARS_LAYERS)
  string(REPLACE ";" "\n" text "${layers}")
  file(WRITE ${PROJECT_BINARY_DIR}/layers.txt "${text}\n")
  # Debian's interpreter, the one the tests use, not whatever a shell's PATH puts first.
  find_program(SHEARS_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH REQUIRED)
  add_custom_target(check_layers ALL
    COMMAND ${SHEARS_PYTHON3} ${PROJECT_SOURCE_DIR}/scripts/check_layers.py
            ${PROJECT_BINARY_DIR}/layers.txt ${PROJECT_SOURCE_DIR}
    COMMENT "Checking that every #include follows the declared layers"
    VERBATIM)
endfunction()
