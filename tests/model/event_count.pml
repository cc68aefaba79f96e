/* The event count idle pool workers sleep on (core/include/anydefer/detail/sync/event_count.hpp), model-checked
 * with spin: prepare_wait / re-check / cancel_wait or commit_wait against publish-then-notify_one.
 *
 * Processes: two workers, each of which must take one task, sleeping when it finds none; two producers, each
 * publishing one task and then calling notify_one(). The futex is modelled exactly: commit_wait sleeps only if
 * the epoch still equals its key (checked atomically with going to sleep), and notify_one wakes at most one
 * sleeper. spin explores every interleaving and checks that no wake-up is lost: every worker gets a task and no
 * worker sleeps forever (pan reports a worker blocked at the end as an invalid end state), and waiters_ is back
 * to zero at the end.
 * spin's interleavings are sequentially consistent, which is what the fence pair (heavy_fence in prepare_wait,
 * light_fence in notify) provides the two sides of this Dekker pattern; the code says why each order suffices.
 *
 * Run: tools/model. It also checks a mutant (MUTANT_CHECK_BEFORE_REGISTERING: the worker reads the epoch and
 * re-checks for work before it registers as a waiter) and fails if spin does not find the lost wake-up. */

byte tasks = 0;         /* published, not yet taken */
byte epoch = 0;
byte waiters = 0;
bool asleep[2];         /* the futex's sleepers */
byte taken = 0;
byte done = 0;

proctype producer() {
  tasks++;                                  /* queue.push(t) */
  /* notify_one(): light_fence(); if waiters_ == 0 return; epoch++; wake one sleeper */
  if
  :: waiters == 0 -> skip
  :: else ->
     epoch++;
     atomic {
       if
       :: asleep[0] -> asleep[0] = false
       :: asleep[1] -> asleep[1] = false
       :: else -> skip
       fi
     }
  fi;
  done++
}

proctype worker(byte me) {
  byte key;
  bool got = false;
  do
  :: got -> break
  :: else ->
     /* try to take a task without sleeping */
     atomic { if :: tasks > 0 -> tasks--; got = true :: else -> skip fi };
     if
     :: got -> skip
     :: else ->
#ifndef MUTANT_CHECK_BEFORE_REGISTERING
        waiters++;                          /* prepare_wait(): register, (heavy fence), read the epoch */
        key = epoch;
        atomic { if :: tasks > 0 -> tasks--; got = true :: else -> skip fi };   /* the re-check */
#else
        key = epoch;
        atomic { if :: tasks > 0 -> tasks--; got = true :: else -> skip fi };
        waiters++;
#endif
        if
        :: got -> waiters--                 /* cancel_wait() */
        :: else ->
           /* commit_wait(key): sleeps only while the epoch is still `key` */
           atomic { if :: epoch == key -> asleep[me] = true :: else -> skip fi };
           (!asleep[me]);
           waiters--
        fi
     fi
  od;
  taken++;
  done++
}

init {
  atomic { run worker(0); run worker(1); run producer(); run producer() };
  (done == 4);
  assert(taken == 2);
  assert(waiters == 0)
}
