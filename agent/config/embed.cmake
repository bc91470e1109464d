# Writes OUT: a C++ file defining sluice::kDefaultConfigYaml with the bytes of IN.
file(READ ${IN} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUT} "// Generated from ${IN}: do not edit.\n#include <cstddef>\nnamespace sluice {\nextern const char kDefaultConfigYaml[];\nextern const std::size_t kDefaultConfigYamlSize;\nconst char kDefaultConfigYaml[] = {${bytes} 0x00};\nconst std::size_t kDefaultConfigYamlSize = sizeof(kDefaultConfigYaml) - 1;\n}  // namespace sluice\n")
