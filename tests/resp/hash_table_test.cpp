// The RESP server's keyspace table (bench/resp_server/hash_table.hpp) on its own, with hashers that make keys
// collide, so that what tells keys apart is the comparison of their bytes, not their hashes.
#include "hash_table.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <span>
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

// find_each() looks keys up in groups (their buckets fetched first): what it reports for each key must be what
// find() reports, in the order of the keys, across group boundaries, duplicates and absent keys.
template <class Table>
void expect_find_each_agrees(Table& table, const std::vector<std::string_view>& keys) {
  std::vector<std::size_t> order;
  table.find_each(std::span<const std::string_view>(keys), [&](std::size_t i, int* found) {
    order.push_back(i);
    ASSERT_LT(i, keys.size());
    EXPECT_EQ(found, table.find(keys[i])) << "key " << i << " (" << keys[i] << ")";
  });
  std::vector<std::size_t> expected(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
}

TEST(RespHashTable, FindEachReportsWhatFindDoesForEveryKeyInOrder) {
  resp_server::hash_table<int> spread;
  resp_server::hash_table<int, one_hash> chained;
  std::vector<std::string> stored;
  for (int i = 0; i < 200; ++i) stored.push_back("key:" + std::to_string(i));
  std::vector<std::string> absent = {"", "key:200", "key:-1", std::string(40, 'x')};
  std::vector<std::string_view> keys;
  // 37 keys: two full groups of 16 and a partial one, with absent keys and a repeated key among them.
  for (int i = 0; i < 30; ++i) keys.push_back(stored[static_cast<std::size_t>(i * 7 % 200)]);
  for (const std::string& a : absent) keys.push_back(a);
  keys.push_back(stored[0]);
  keys.push_back(stored[0]);
  keys.push_back(stored[199]);
  ASSERT_EQ(keys.size(), 37U);

  expect_find_each_agrees(spread, keys);  // an empty table: nothing is found
  for (int i = 0; i < 200; ++i) {
    spread.insert(stored[static_cast<std::size_t>(i)]) = i;
    chained.insert(stored[static_cast<std::size_t>(i)]) = i;
    // Every few inserts, including while a growth is under way (both bucket arrays in use).
    if (i % 9 == 0) {
      expect_find_each_agrees(spread, keys);
      expect_find_each_agrees(chained, keys);
    }
  }
  expect_find_each_agrees(spread, keys);
  expect_find_each_agrees(chained, keys);
  expect_find_each_agrees(spread, {});

  int visits = 0;
  spread.find_each(std::span<const std::string_view>(keys), [&](std::size_t i, int* found) {
    ++visits;
    if (i < 30 || i >= 34) {
      ASSERT_NE(found, nullptr) << "key " << i;
      EXPECT_EQ(stored[static_cast<std::size_t>(*found)], keys[i]);
    } else {
      EXPECT_EQ(found, nullptr) << "key " << i;
    }
  });
  EXPECT_EQ(visits, 37);
}

TEST(RespHashTable, FindEachSeesWhatItsVisitorErasedAndInserted) {
  resp_server::hash_table<int, length_hash> table;
  for (int i = 0; i < 40; ++i) table.insert("k" + std::to_string(100 + i)) = i;
  // Erase each key as it is visited, and insert n001 just before it is looked up: the later lookups start afresh,
  // so a repeated key is gone the second time, and an inserted one is found.
  const std::vector<std::string> owned = {"k100", "k101", "k100", "n001", "k139", "n001", "k120", "k120"};
  const std::vector<std::string_view> keys(owned.begin(), owned.end());
  std::vector<bool> found;
  table.find_each(std::span<const std::string_view>(keys), [&](std::size_t i, int* value) {
    found.push_back(value != nullptr);
    if (value != nullptr) table.erase(keys[i]);
    if (i == 2) table.insert("n001") = -1;
  });
  EXPECT_EQ(found, (std::vector<bool>{true, true, false, true, true, false, true, false}));
  EXPECT_EQ(table.size(), 40U - 4U);  // k100, k101, k139, k120 erased; n001 inserted and erased
}

}  // namespace
