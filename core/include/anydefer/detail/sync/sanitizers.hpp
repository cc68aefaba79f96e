// anydefer/detail/sync/sanitizers.hpp: which sanitizer this translation unit is built with, in one place.
//
// GCC says __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__; clang says __has_feature(...). Code that must change under
// a sanitizer (the fences ThreadSanitizer cannot model, the state cache AddressSanitizer must see through, the
// suppressions for third-party code) tests these macros and nothing else:
//   ANYDEFER_DETAIL_TSAN       ThreadSanitizer
//   ANYDEFER_DETAIL_SANITIZED  ThreadSanitizer or AddressSanitizer
#pragma once

#if defined(__SANITIZE_THREAD__)
#define ANYDEFER_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ANYDEFER_DETAIL_TSAN 1
#endif
#endif

#if defined(ANYDEFER_DETAIL_TSAN) || defined(__SANITIZE_ADDRESS__)
#define ANYDEFER_DETAIL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ANYDEFER_DETAIL_SANITIZED 1
#endif
#endif
