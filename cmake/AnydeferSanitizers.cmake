# Sanitizer lanes, selected with -DANYDEFER_SANITIZE=none|thread|address.
#
#   thread   ThreadSanitizer.
#   address  AddressSanitizer + UndefinedBehaviorSanitizer, no recovery (the first report fails the run).
#            LeakSanitizer is part of ASan on Linux and on by default (ASAN_OPTIONS=detect_leaks=1).
#
# The flags apply to everything compiled in this build (libraries, tests, benchmarks), because mixing instrumented
# and uninstrumented code of the same program gives false reports (TSan) or missed ones (ASan).
# ANYDEFER_SANITIZER_FLAGS keeps them so the consumer test can build its program with the same flags.

string(TOLOWER "${ANYDEFER_SANITIZE}" _anydefer_sanitize)
set(ANYDEFER_SANITIZER_FLAGS "")

if(_anydefer_sanitize STREQUAL "none" OR _anydefer_sanitize STREQUAL "" OR _anydefer_sanitize STREQUAL "off")
  set(ANYDEFER_SANITIZE "none")
elseif(_anydefer_sanitize STREQUAL "thread")
  set(ANYDEFER_SANITIZER_FLAGS -fsanitize=thread)
elseif(_anydefer_sanitize STREQUAL "address")
  set(ANYDEFER_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all)
  # GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s std::variant move (variant<monostate, failure>) only
  # when ASan instrumentation runs at -O1: a known class of false positives of that warning under sanitizers.
  # The release and TSan lanes keep it as an error.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-maybe-uninitialized)
  endif()
else()
  message(FATAL_ERROR "ANYDEFER_SANITIZE must be one of none, thread, address (got '${ANYDEFER_SANITIZE}')")
endif()

if(ANYDEFER_SANITIZER_FLAGS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "ANYDEFER_SANITIZE=${ANYDEFER_SANITIZE} needs GCC or Clang")
  endif()
  # -O1 keeps sanitized runs reasonably fast while the stacks stay readable; it comes after the build type's -O
  # flag on the command line, so it wins. Build sanitizer lanes as Debug to keep assertions on.
  add_compile_options(${ANYDEFER_SANITIZER_FLAGS} -fno-omit-frame-pointer -O1 -g)
  add_link_options(${ANYDEFER_SANITIZER_FLAGS})
  message(STATUS "anydefer: sanitizer lane '${ANYDEFER_SANITIZE}': ${ANYDEFER_SANITIZER_FLAGS}")
endif()
unset(_anydefer_sanitize)
