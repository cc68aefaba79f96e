// anydefer/anydefer.hpp: the whole core API in one include.
#pragma once

#include "anydefer/combinators.hpp"
#include "anydefer/coroutine.hpp"
#include "anydefer/deferred.hpp"
#include "anydefer/deferred_lock.hpp"
#include "anydefer/deferred_queue.hpp"
#include "anydefer/errors.hpp"
#include "anydefer/executor.hpp"
#include "anydefer/failure.hpp"
#include "anydefer/std_future.hpp"
#include "anydefer/unhandled_error.hpp"
