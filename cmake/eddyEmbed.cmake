# eddy_embed_dashboard(TARGET DIR): compiles every file of DIR into TARGET
# as a C array, listed in the table declared by src/http/assets.h, so that
# the dashboard is served from the binary with no file at run time.
# The C file is generated at build time (cmake -P cmake/embed_files.cmake)
# and regenerated whenever one of the files changes.
function(eddy_embed_dashboard target dir)
  file(GLOB _files CONFIGURE_DEPENDS ${dir}/*.html ${dir}/*.css ${dir}/*.js
       ${dir}/*.svg)
  list(SORT _files)
  set(_out ${PROJECT_BINARY_DIR}/generated/eddy_dashboard_assets.c)
  string(REPLACE ";" "|" _list "${_files}")
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${CMAKE_COMMAND} "-DOUT=${_out}" "-DFILES=${_list}"
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    DEPENDS ${_files} ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    COMMENT "Embedding the dashboard (${dir})"
    VERBATIM)
  target_sources(${target} PRIVATE ${_out})
endfunction()
