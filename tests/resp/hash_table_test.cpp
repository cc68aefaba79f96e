// The RESP server's keyspace table (bench/resp_server/hash_table.hpp) on its own, with hashers that make keys
// collide, so that what tells keys apart is the comparison of their bytes, not their hashes.
#include "hash_table.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Every key in one bucket chain: each lookup walks the chain and compares bytes.
struct one_hash {
  std::size_t operator()(std::string_view) const noexcept { return 42; }
};
// Equal for keys of equal length: only their bytes tell them apart.
struct length_hash {
  std::size_t operator()(std::string_view key) const noexcept { return key.size(); }
};

template <class Table>
void expect_holds(Table& table, const std::map<std::string, int>& model) {
  EXPECT_EQ(table.size(), model.size());
  for (const auto& [key, value] : model) {
    const int* found = table.find(key);
    ASSERT_NE(found, nullptr) << "key of " << key.size() << " bytes";
    EXPECT_EQ(*found, value) << "key of " << key.size() << " bytes";
  }
}

TEST(RespHashTable, KeysThatShareTheirHashAreToldApartByTheirBytes) {
  resp_server::hash_table<int, one_hash> table;
  const std::vector<std::string> keys = {"",
                                         "a",
                                         std::string("a\0", 2),
                                         std::string("\0a", 2),
                                         "ab",
                                         "ba",
                                         "key:000000012345",
                                         "key:000000012346",
                                         "key:000000012345x",
                                         std::string(300, 'k'),
                                         std::string(299, 'k') + "j"};
  std::map<std::string, int> model;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(table.find(keys[i]), nullptr) << "key " << i << " found before it was inserted";
    table.insert(keys[i]) = static_cast<int>(i);
    model[keys[i]] = static_cast<int>(i);
  }
  expect_holds(table, model);
  EXPECT_EQ(table.find("b"), nullptr);
  EXPECT_EQ(table.find("key:000000012347"), nullptr);
  EXPECT_EQ(table.find(std::string(300, 'j')), nullptr);

  // Erasing one key leaves its neighbours in the chain, whichever end of the chain it was at.
  for (const std::string& gone : {keys[0], keys[6], keys[10]}) {
    EXPECT_TRUE(table.erase(gone));
    EXPECT_FALSE(table.erase(gone));
    EXPECT_EQ(table.find(gone), nullptr);
    model.erase(gone);
    expect_holds(table, model);
  }
}

TEST(RespHashTable, EqualLengthKeysStayApartThroughGrowthAndErasure) {
  resp_server::hash_table<int, length_hash> table;
  std::map<std::string, int> model;
  // 3,000 keys, many of each length, so the table grows several times while every bucket holds a long chain.
  for (int i = 0; i < 3000; ++i) {
    std::string key = "k" + std::to_string(i % 10) + std::to_string(i);
    table.insert(key) = i;
    model[key] = i;
    if (i % 5 == 0) {
      const std::string earlier = "k" + std::to_string((i / 2) % 10) + std::to_string(i / 2);
      EXPECT_EQ(table.erase(earlier), model.erase(earlier) == 1) << earlier;
    }
  }
  expect_holds(table, model);
  table.clear();
  EXPECT_EQ(table.size(), 0U);
  EXPECT_EQ(table.find(model.begin()->first), nullptr);
}

TEST(RespHashTable, AValueKeepsItsAddressWhileTheTableGrows) {
  resp_server::hash_table<std::string> table;
  std::string& first = table.insert("first");
  first = "value";
  for (int i = 0; i < 100'000; ++i) table.insert("key:" + std::to_string(i));
  EXPECT_EQ(table.find("first"), &first);
  EXPECT_EQ(first, "value");
  EXPECT_EQ(table.size(), 100'001U);
}

}  // namespace
