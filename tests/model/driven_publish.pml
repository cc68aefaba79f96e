/* A link's (or a coroutine's) result and lifetime against cancel() and its owners
 * (core/include/anydefer/detail/state.hpp: publish_written, publish_to_waiter, end_driving, cancel_driven,
 * publish_racing_driver, last_owner_may_free), model-checked with spin.
 *
 * A link (a *driven* state) writes its result before it claims, then claims and publishes in one CAS; cancel()
 * claims first and publishes a cancellation as a flag, never writing the result the link may be writing at that
 * moment. The link's driver keeps the state alive with the `driving` bit of the word, not with a count: its
 * publishing CAS clears the bit (unless a waiter must be woken first: then it clears it after the wake), and a
 * driver that gives up after a cancel() clears it with an RMW of its own. Owners count in `counts`; the last one
 * to leave frees the state if the driver has left, else marks it `orphaned` with an RMW and the driver frees it.
 * Processes: the driver, one cancel() (from a handle it then drops), one consumer (attaches a continuation, or
 * consumes a published result; its reference goes once its continuation ran) and one blocking waiter (wait(),
 * then drops its handle). spin explores every interleaving and checks:
 *   - exactly one of driver and cancel publishes; the continuation runs exactly once;
 *   - whoever reads the result (the continuation, the consumer, the waiter) reads what the winner published:
 *     the driver's value when the flag is clear, and the cancellation otherwise; never a value written after
 *     it was published;
 *   - the waiter never sleeps forever;
 *   - the state is freed exactly once, and nobody touches it (the word, the result, a futex wake) after.
 * Interleavings are sequentially consistent: this checks the protocol's logic; the memory orders are argued next
 * to the code and exercised by the ThreadSanitizer stress tests.
 *
 * Mutants (tools/model checks that spin finds each):
 *   MUTANT_CANCEL_WRITES_RESULT: cancel() writes cancelled_error into the result, as a root's cancel does. The
 *     driver's write, made before its CAS, can then land after cancel published.
 *   MUTANT_PLAIN_PUBLISH_WHILE_DRIVING: cancel() publishes with a plain store when a consumer was there at its
 *     claim, as it may for a root. The store can undo the driver's clearing of `driving`: nobody frees the state.
 *   MUTANT_LEAVE_BEFORE_WAKE: the driver clears `driving` in its publishing CAS even with a waiter, and wakes it
 *     after. The waiter may see the result, drop the last handle and free the state before the wake. */

#define CLAIMED  1
#define READY    2
#define CONSUMED 4
#define WAITING  8
#define CONT     16
#define DRIVING  32
#define ORPHANED 64

#define NOTHING  0
#define VALUE    1   /* the driver's result */
#define CANCELLED 2  /* only the mutant writes this into the result */

byte word = DRIVING;
byte counts = 3;       /* the canceller's handle, the consumer's reference, the waiter's handle */
bool freed = false;
byte frees = 0;
byte result = NOTHING;
bool cancel_flag = false;
byte publishers = 0;
bool driver_won = false;
byte runs = 0;
byte wake_seq = 0;
byte done = 0;

inline alive() {
  assert(!freed)
}

inline free_state() {
  alive();
  freed = true;
  frees++
}

/* What a reader of a published result must see. */
inline check_read() {
  alive();
  if
  :: cancel_flag -> assert(!driver_won)
  :: else ->
#ifdef MUTANT_CANCEL_WRITES_RESULT
     if
     :: driver_won -> assert(result == VALUE)
     :: else -> assert(result == CANCELLED)
     fi
#else
     assert(driver_won && result == VALUE)
#endif
  fi
}

inline run_continuation() {
  check_read();
  runs++
}

/* drop_ref_was_last(), then last_owner_may_free(): the last owner frees the state unless its driver still runs it;
 * then it orphans it, and frees it itself only if the driver left in between. */
inline owner_leaves(c, o) {
  atomic { alive(); counts--; c = counts };
  if
  :: c == 0 ->
     atomic { alive(); o = word };
     if
     :: (o & DRIVING) == 0 -> free_state()
     :: else ->
        atomic { alive(); o = word; word = word | ORPHANED };
        if :: (o & DRIVING) == 0 -> free_state() :: else -> skip fi
     fi
  :: else -> skip
  fi
}

/* end_driving(): the driver's leaving RMW; it frees an orphaned state. */
inline end_driving(o) {
  atomic { alive(); o = word; word = word & ~DRIVING };
  if :: (o & ORPHANED) != 0 -> free_state() :: else -> skip fi
}

proctype driver() {
  byte w, o;
  bool published = false;
  result = VALUE;                                   /* written before the claim: the only writer of result */
  atomic { alive(); w = word };
  do
  :: (w & CLAIMED) != 0 ->                          /* cancel() won: what was written is dropped; leave */
     end_driving(o);
     break
#ifndef MUTANT_LEAVE_BEFORE_WAKE
  :: (w & CLAIMED) == 0 && (w & WAITING) != 0 ->    /* publish_to_waiter(): keep `driving` until the wake */
     atomic {
       alive();
       if
       :: word == w -> word = w | CLAIMED | READY; publishers++; driver_won = true; published = true
       :: else -> w = word
       fi
     };
     if
     :: published ->
        alive(); wake_seq++;                        /* futex_wake_all(word) */
        end_driving(o);
        if :: (w & CONT) != 0 -> run_continuation() :: else -> skip fi;   /* its reference keeps the state */
        break
     :: else -> skip
     fi
  :: (w & CLAIMED) == 0 && (w & WAITING) == 0 ->
#else
  :: (w & CLAIMED) == 0 ->
#endif
     atomic {                                       /* CAS(w, (w | claimed | ready) & ~driving) */
       alive();
       if
       :: word == w -> word = (w | CLAIMED | READY) & ~DRIVING; publishers++; driver_won = true; published = true
       :: else -> w = word
       fi
     };
     if
     :: published ->
#ifdef MUTANT_LEAVE_BEFORE_WAKE
        if :: (w & WAITING) != 0 -> alive(); wake_seq++ :: else -> skip fi;
#endif
        if
        :: (w & ORPHANED) != 0 -> assert((w & CONT) == 0); free_state()
        :: else -> skip
        fi;
        if :: (w & CONT) != 0 -> run_continuation() :: else -> skip fi;
        break
     :: else -> skip
     fi
  od;
  done++
}

proctype canceller() {
  byte old, old2, c, o;
  atomic { alive(); old = word; word = word | CLAIMED };   /* claim(): fetch_or(claimed) */
  if
  :: (old & CLAIMED) != 0 -> skip                    /* the driver published first: cancel is a no-op */
  :: else ->
#ifdef MUTANT_CANCEL_WRITES_RESULT
     result = CANCELLED;
#else
     cancel_flag = true;                            /* fetch_or(holds_cancellation), before the publish */
#endif
     publishers++;
#ifdef MUTANT_PLAIN_PUBLISH_WHILE_DRIVING
     if
     :: (old & CONT) != 0 ->                         /* publish: plain store, as for a root */
        atomic { alive(); word = old | CLAIMED | READY };
        if :: (old & WAITING) != 0 -> wake_seq++ :: else -> skip fi;
        run_continuation()
     :: else ->
#endif
     atomic { alive(); old2 = word; word = word | READY };   /* publish_racing_driver(): fetch_or(ready) */
     if :: (old2 & WAITING) != 0 -> wake_seq++ :: else -> skip fi;
     if :: (old2 & CONT) != 0 -> run_continuation() :: else -> skip fi
#ifdef MUTANT_PLAIN_PUBLISH_WHILE_DRIVING
     fi
#endif
  fi;
  owner_leaves(c, o);                                /* the handle cancel() was called on goes */
  done++
}

proctype consumer() {
  byte w, c, o;
  bool took = false;
  bool attached = false;
  atomic { alive(); w = word };
  do
  :: (w & READY) != 0 ->
     atomic { alive(); if :: word == w -> word = w | CONSUMED; took = true :: else -> w = word fi };
     if :: took -> run_continuation(); break :: else -> skip fi
  :: (w & READY) == 0 ->
     atomic { alive(); if :: word == w -> word = w | CONT; attached = true :: else -> w = word fi };
     if :: attached -> break :: else -> skip fi
  od;
  if :: attached -> (runs == 1) :: else -> skip fi;  /* a consumer is freed, and lets go, after it ran */
  owner_leaves(c, o);
  done++
}

proctype waiter() {
  byte w, seq, c, o;
  bool sleeping;
  atomic { alive(); w = word };
  do
  :: (w & READY) != 0 -> check_read(); break
  :: (w & READY) == 0 && (w & CLAIMED) != 0 -> atomic { alive(); w = word }   /* being published: yield */
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) == 0 ->
     atomic { alive(); if :: word == w -> word = w | WAITING; w = w | WAITING :: else -> w = word fi }
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) != 0 ->
     atomic { alive(); if :: word != w -> sleeping = false :: else -> sleeping = true; seq = wake_seq fi };
     if :: sleeping -> (wake_seq != seq) :: else -> skip fi;
     atomic { alive(); w = word }
  od;
  owner_leaves(c, o);
  done++
}

init {
  atomic { run driver(); run canceller(); run consumer(); run waiter() };
  (done == 4);
  assert(publishers == 1);
  assert(runs == 1);
  assert(frees == 1)
}
