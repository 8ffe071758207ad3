#include "dirty_bitmap.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "errors.h"
#include "js_args.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "bitmaps are little-endian u64 words");

namespace vh {
namespace {

// Run lists carry u32 page indices: 2^32 pages is 16 TiB of 4 KiB pages.
constexpr std::uint64_t kMaxBits = 1ULL << 32;

// Word i of a bitmap of nbytes bytes; a short last word is zero-extended.
inline std::uint64_t LoadWord(const std::uint8_t* bm, std::uint64_t i, std::uint64_t nbytes) {
  std::uint64_t w = 0;
  std::uint64_t off = i * 8;
  std::memcpy(&w, bm + off, off + 8 <= nbytes ? 8 : static_cast<std::size_t>(nbytes - off));
  return w;
}

// Calls fn(word, base) for each 64-bit word of the bitmap; the short last word reads bits at
// and past nbits as 0 (which also closes a run open there).
template <typename Fn>
inline void ForEachWord(const std::uint8_t* bitmap, std::uint64_t nbits, Fn&& fn) {
  const std::uint64_t whole = nbits / 64;
  for (std::uint64_t i = 0; i < whole; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bitmap + i * 8, 8);
    fn(w, i * 64);
  }
  if ((nbits & 63) != 0) {
    fn(LoadWord(bitmap, whole, (nbits + 7) / 8) & ((1ULL << (nbits & 63)) - 1), whole * 64);
  }
}

// (bitmap, nbits) from JS arguments: nbits defaults to the whole buffer and may not exceed it.
std::pair<const std::uint8_t*, std::uint64_t> BitmapArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  JsBytes bitmap = JsToBytes(env, info[0], "bitmap");
  std::uint64_t nbits = static_cast<std::uint64_t>(bitmap.len) * 8;
  if (!info[1].IsUndefined()) {
    std::uint64_t n = JsToU64(env, info[1], "nbits");
    if (n > nbits) ThrowError(env, ErrorFacts::OutOfRange("nbits exceeds the bitmap length"));
    nbits = n;
  }
  if (nbits > kMaxBits) ThrowInvalidArg(env, "bitmaps are limited to 2^32 bits");
  return {bitmap.data, nbits};
}

}  // namespace

// Sets bits [first, first + count) of a u64-word bitmap.
void SetBits(std::uint64_t* words, std::uint64_t first, std::uint64_t count) {
  std::uint64_t end = first + count;
  while (first < end) {
    std::uint64_t bit = first & 63;
    std::uint64_t n = std::min<std::uint64_t>(64 - bit, end - first);
    std::uint64_t mask = n == 64 ? ~0ULL : ((1ULL << n) - 1) << bit;
    words[first >> 6] |= mask;
    first += n;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// Without -mpopcnt GCC calls a table-driven libgcc helper; the clone uses POPCNT when present.
__attribute__((target_clones("popcnt", "default")))
#endif
std::uint64_t Popcount(const std::uint8_t* bm, std::uint64_t nbits) {
  std::uint64_t nbytes = (nbits + 7) / 8;
  std::uint64_t nwords = (nbits + 63) / 64;
  std::uint64_t total = 0;
  for (std::uint64_t i = 0; i < nwords; ++i) {
    std::uint64_t w = LoadWord(bm, i, nbytes);
    if (i + 1 == nwords && (nbits & 63) != 0) w &= (1ULL << (nbits & 63)) - 1;
    total += static_cast<std::uint64_t>(__builtin_popcountll(w));
  }
  return total;
}


#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("popcnt", "default")))
#endif
std::uint64_t CountRuns(const std::uint8_t* bitmap, std::uint64_t nbits) {
  // A run starts at every set bit whose predecessor (carried across words) is clear.
  std::uint64_t count = 0;
  std::uint64_t carry = 0;
  ForEachWord(bitmap, nbits, [&](std::uint64_t w, std::uint64_t) {
    count += static_cast<std::uint64_t>(__builtin_popcountll(w & ~((w << 1) | carry)));
    carry = w >> 63;
  });
  return count;
}

void BitmapToRuns(const std::uint8_t* bitmap, std::uint64_t nbits, std::uint32_t* out) {
  bool in_run = false;
  std::uint64_t start = 0;
  ForEachWord(bitmap, nbits, [&](std::uint64_t w, std::uint64_t base) {
    // The common cases, a clean word outside a run or a full word inside one, cost one compare.
    if (in_run ? w == ~0ULL : w == 0) return;
    unsigned bit = 0;
    for (;;) {
      std::uint64_t m = (in_run ? ~w : w) & (~0ULL << bit);
      if (m == 0) return;
      bit = static_cast<unsigned>(__builtin_ctzll(m));
      if (in_run) {
        *out++ = static_cast<std::uint32_t>(start);
        *out++ = static_cast<std::uint32_t>(base + bit - start);
      } else {
        start = base + bit;
      }
      in_run = !in_run;
    }
  });
  if (in_run) {
    *out++ = static_cast<std::uint32_t>(start);
    *out++ = static_cast<std::uint32_t>(nbits - start);
  }
}

Napi::Uint32Array RunsToJs(Napi::Env env, const std::uint8_t* bitmap, std::uint64_t nbits) {
  // Counting first lets the runs go straight into the JS array: no growing vector, no copy,
  // and each output page is faulted in once.
  std::uint64_t n = CountRuns(bitmap, nbits);
  Napi::Uint32Array out = Napi::Uint32Array::New(env, static_cast<std::size_t>(2 * n));
  if (n != 0) BitmapToRuns(bitmap, nbits, out.Data());
  return out;
}

Napi::Value BitmapToRunsJs(const Napi::CallbackInfo& info) {
  auto [bm, nbits] = BitmapArgs(info);
  return RunsToJs(info.Env(), bm, nbits);
}

Napi::Value BitmapPopcountJs(const Napi::CallbackInfo& info) {
  auto [bm, nbits] = BitmapArgs(info);
  return Napi::Number::New(info.Env(), static_cast<double>(Popcount(bm, nbits)));
}

}  // namespace vh
