// Dirty bitmaps: 1 bit per host page, little-endian u64 words (the layout of
// KVM_GET_DIRTY_LOG and of the userspace tracker). Pure word-at-a-time helpers shared by every
// dirty-tracking backend, plus their JS exports.
#ifndef VH_NATIVE_DIRTY_BITMAP_H_
#define VH_NATIVE_DIRTY_BITMAP_H_

#include <napi.h>

#include <cstdint>

namespace vh {

// Sets bits [first, first + count) of a u64-word bitmap.
void SetBits(std::uint64_t* words, std::uint64_t first, std::uint64_t count);
// Number of set bits in [0, nbits).
std::uint64_t Popcount(const std::uint8_t* bitmap, std::uint64_t nbits);
// Number of maximal runs of set bits in [0, nbits).
std::uint64_t CountRuns(const std::uint8_t* bitmap, std::uint64_t nbits);
// Writes [firstPage, count] pairs for the runs of set bits in [0, nbits); `out` holds
// 2 * CountRuns() entries. All-zero and all-one words cost one compare each.
void BitmapToRuns(const std::uint8_t* bitmap, std::uint64_t nbits, std::uint32_t* out);
// The run list of a bitmap as a new Uint32Array, written in place (count first, no copy).
Napi::Uint32Array RunsToJs(Napi::Env env, const std::uint8_t* bitmap, std::uint64_t nbits);

// JS: bitmapToRuns(bitmap: Uint8Array, nbits?: number): Uint32Array of [first, count] pairs.
Napi::Value BitmapToRunsJs(const Napi::CallbackInfo& info);
// JS: bitmapPopcount(bitmap: Uint8Array, nbits?: number): number of set bits (bench baseline).
Napi::Value BitmapPopcountJs(const Napi::CallbackInfo& info);

}  // namespace vh

#endif  // VH_NATIVE_DIRTY_BITMAP_H_
