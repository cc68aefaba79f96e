// Replays every input of the fuzzer's seed corpus (tests/fuzz/corpus/) and every kept crash (tests/fuzz/crashes/)
// through the differential harness: anydefer and the reference model must agree on each.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/harness.hpp"

#ifndef ANYDEFER_FUZZ_CORPUS_DIR
#error "ANYDEFER_FUZZ_CORPUS_DIR must name tests/fuzz/corpus"
#endif

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void replay(const std::vector<fs::path>& files) {
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    ASSERT_TRUE(in) << file;
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string why;
    EXPECT_TRUE(anydefer_fuzz::run_ops(bytes.data(), bytes.size(), &why)) << file.filename().string() << "\n" << why;
  }
}

TEST(FuzzRegression, SeedCorpusAgreesWithModel) {
  const auto files = inputs_in(ANYDEFER_FUZZ_CORPUS_DIR);
  ASSERT_FALSE(files.empty()) << "no seed inputs in " << ANYDEFER_FUZZ_CORPUS_DIR;
  replay(files);
}

TEST(FuzzRegression, KeptCrashesAgreeWithModel) {
  replay(inputs_in(fs::path(ANYDEFER_FUZZ_CORPUS_DIR).parent_path() / "crashes"));
}

}  // namespace
