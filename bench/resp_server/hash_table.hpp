// hash_table.hpp: the keyspace's table of string keys (one per shard of the RESP server).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

namespace resp_server {

// A chained hash table of string keys, grown incrementally as Redis's dict is. std::unordered_map rehashes every
// key at once, and first zeroes its new bucket array with memset, faulting in all of its pages together: on a
// virtual machine a fresh page costs about 10 us, so a growth past 200,000 keys stalled the shard for 4 to 10 ms
// (the worst latencies of a benchmark that creates keys). Here a growth takes its new bucket array from calloc,
// which hands out fresh zero pages from the kernel without touching them (each is faulted in by the first
// operation that lands on it), and every later operation moves a few buckets across until the old array is empty;
// meanwhile lookups look in both. Nodes never move: a value keeps its address.
template <class Value, class Hash = std::hash<std::string_view>>
class hash_table {
 public:
  hash_table() = default;
  hash_table(const hash_table&) = delete;
  hash_table& operator=(const hash_table&) = delete;
  ~hash_table() { clear(); }

  Value* find(std::string_view key) noexcept {
    step();
    const place p = locate(key, hash(key));
    return p.link != nullptr ? &(*p.link)->value : nullptr;
  }

  // find() of each key of `keys`, in order: visit(i, the value of keys[i] or nullptr). A lookup in a large table
  // misses the cache on its bucket and then on the node the bucket points to, and the second miss waits for the
  // first; the processor overlaps the lookups of different keys only as far as its window reaches. So the keys go
  // by groups: the buckets of a group are fetched together first, and the lookups that follow miss only on their
  // nodes, which the processor overlaps by itself (prefetching the nodes too measured no faster). `visit` may
  // insert or erase keys: a fetched bucket is only a hint, and each lookup starts afresh.
  template <class Visit>
  void find_each(std::span<const std::string_view> keys, Visit&& visit) {
    constexpr std::size_t group = 16;
    std::array<std::size_t, group> hashes;
    for (std::size_t first = 0; first < keys.size(); first += group) {
      const std::size_t n = std::min(group, keys.size() - first);
      for (std::size_t i = 0; i < n; ++i) {
        hashes[i] = hash(keys[first + i]);
        for (const bucket_array& t : tables_) {
          if (t.size != 0) __builtin_prefetch(&t.head_for(hashes[i]));
        }
      }
      for (std::size_t i = 0; i < n; ++i) {
        step();
        const place p = locate(keys[first + i], hashes[i]);
        visit(first + i, p.link != nullptr ? &(*p.link)->value : nullptr);
      }
    }
  }

  // A key find() did not find.
  Value& insert(std::string_view key) {
    const std::size_t h = hash(key);
    step();
    if (!growing() && tables_[0].used >= tables_[0].size) grow();
    bucket_array& t = growing() ? tables_[1] : tables_[0];
    node*& head = t.head_for(h);
    head = node::make(head, h, key);
    ++t.used;
    return head->value;
  }

  bool erase(std::string_view key) noexcept {
    step();
    const place p = locate(key, hash(key));
    if (p.link == nullptr) return false;
    node::destroy(std::exchange(*p.link, (*p.link)->next));
    --p.table->used;
    return true;
  }

  std::size_t size() const noexcept { return tables_[0].used + tables_[1].used; }

  void clear() noexcept {
    for (bucket_array& t : tables_) {
      for (std::size_t i = 0; i < t.size; ++i) {
        for (node* n = t.heads[i]; n != nullptr;) node::destroy(std::exchange(n, n->next));
      }
      t = bucket_array{};
    }
    moved_below_ = 0;
  }

  // Moves up to `buckets` non-empty buckets of a growth under way across (visiting at most eight times as many).
  void step(std::size_t buckets = buckets_per_operation) noexcept {
    if (!growing()) return;
    bucket_array& from = tables_[0];
    bucket_array& to = tables_[1];
    for (std::size_t visits = 8 * buckets; buckets > 0 && visits > 0 && moved_below_ < from.size; --visits) {
      node* n = std::exchange(from.heads[moved_below_++], nullptr);
      if (n != nullptr) --buckets;
      while (n != nullptr) {
        node* const next = n->next;
        node*& head = to.head_for(n->hash);
        n->next = head;
        head = n;
        --from.used;
        ++to.used;
        n = next;
      }
    }
    if (from.used == 0) {  // all moved: the new array is the table now
      from = std::move(to);
      to = bucket_array{};
      moved_below_ = 0;
    }
  }

 private:
  // Non-empty buckets moved per operation while the table grows. A growth starts when n keys fill n buckets and
  // ends within n / 4 + n / 32 operations (each moves 4 non-empty buckets or visits 32); the new array has room for
  // 2n, so however many of those operations insert, it is not full before the old one is empty.
  static constexpr std::size_t buckets_per_operation = 4;

  // A node and its key in one allocation: the key's bytes follow the node, so a lookup that finds the node has its
  // key in the same cache lines (a std::string member would keep a longer key, such as redis-benchmark's
  // "key:000000012345", in a block of its own, past libstdc++'s 15 inline bytes: one more cache miss per lookup). The
  // value comes first, so that what a lookup reads (the link, the hash, the key) is contiguous.
  struct node {
    Value value;
    node* next;
    std::size_t hash;
    std::uint32_t key_size;

    // The key's bytes, right after the node (sizeof(node) counts its tail padding, so they are past it).
    const char* key_bytes() const noexcept { return reinterpret_cast<const char*>(this) + sizeof(node); }
    char* key_bytes() noexcept { return reinterpret_cast<char*>(this) + sizeof(node); }

    bool holds(std::size_t h, std::string_view k) const noexcept {
      return hash == h && key_size == k.size() && std::memcmp(key_bytes(), k.data(), k.size()) == 0;
    }

    // Nothing may throw between the allocation and the node's construction, and ::operator new(size) aligns for
    // the fundamental alignments only.
    static_assert(std::is_nothrow_default_constructible_v<Value>);
    static_assert(alignof(Value) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    static node* make(node* next, std::size_t h, std::string_view key) {
      if (key.size() > std::numeric_limits<std::uint32_t>::max()) throw std::length_error("key too long");
      void* const raw = ::operator new(sizeof(node) + key.size());
      node* const n = ::new (raw) node{Value{}, next, h, static_cast<std::uint32_t>(key.size())};
      std::memcpy(n->key_bytes(), key.data(), key.size());
      return n;
    }
    static void destroy(node* n) noexcept {
      n->~node();
      ::operator delete(static_cast<void*>(n));
    }
  };
  struct free_deleter {
    void operator()(node** p) const noexcept { std::free(p); }
  };
  struct bucket_array {
    std::unique_ptr<node*[], free_deleter> heads;  // from calloc
    std::size_t size = 0;                          // a power of two, or 0 (none)
    std::size_t used = 0;                          // nodes in it

    node*& head_for(std::size_t h) const noexcept { return heads[h & (size - 1)]; }
  };

  // Where the node of `key` hangs (the link that points to it, and the array that counts it), or nulls.
  struct place {
    node** link = nullptr;
    bucket_array* table = nullptr;
  };
  place locate(std::string_view key, std::size_t h) noexcept {
    for (bucket_array& t : tables_) {
      if (t.size == 0) continue;
      for (node** at = &t.head_for(h); *at != nullptr; at = &(*at)->next) {
        if ((*at)->holds(h, key)) return {at, &t};
      }
    }
    return {};
  }

  static std::size_t hash(std::string_view key) noexcept { return Hash{}(key); }
  bool growing() const noexcept { return tables_[1].size != 0; }

  void grow() {
    const std::size_t n = std::max<std::size_t>(16, 2 * tables_[0].size);
    // calloc, not new and memset: fresh zero pages, each faulted in when first used
    auto* heads = static_cast<node**>(std::calloc(n, sizeof(node*)));
    if (heads == nullptr) throw std::bad_alloc();
    tables_[1].heads.reset(heads);
    tables_[1].size = n;
    tables_[1].used = 0;
    moved_below_ = 0;
    if (tables_[0].used == 0) step();  // nothing to move: the new array simply becomes the table
  }

  std::array<bucket_array, 2> tables_;  // [0]: the table; [1]: the one it grows into, during a growth
  std::size_t moved_below_ = 0;         // during a growth, [0]'s buckets below this index are empty
};

}  // namespace resp_server
