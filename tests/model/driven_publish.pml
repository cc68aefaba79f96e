/* A link's result against cancel() (core/include/anydefer/detail/state.hpp: publish_written, cancel_driven),
 * model-checked with spin.
 *
 * A link (a *driven* state) writes its result before it claims, then claims and publishes in one CAS; cancel()
 * claims first and publishes a cancellation as a flag, never writing the result the link may be writing at that
 * moment. Processes: the link's driver, one cancel(), one consumer (attaches a continuation, or consumes a
 * published result) and one blocking waiter. spin explores every interleaving and checks:
 *   - exactly one of driver and cancel publishes; the continuation runs exactly once;
 *   - whoever reads the result (the continuation, the consumer, the waiter) reads what the winner published:
 *     the driver's value when the flag is clear, and the cancellation otherwise; never a value written after
 *     it was published;
 *   - the waiter never sleeps forever.
 * Interleavings are sequentially consistent: this checks the protocol's logic; the memory orders are argued next
 * to the code and exercised by the ThreadSanitizer stress tests.
 *
 * Mutant (MUTANT_CANCEL_WRITES_RESULT): cancel() writes cancelled_error into the result, as a root's cancel
 * does. The driver's write, made before its CAS, can then land after cancel published: tools/model checks that
 * spin finds it. */

#define CLAIMED  1
#define READY    2
#define CONSUMED 4
#define WAITING  8
#define CONT     16

#define NOTHING  0
#define VALUE    1   /* the driver's result */
#define CANCELLED 2  /* only the mutant writes this into the result */

byte word = 0;
byte result = NOTHING;
bool cancel_flag = false;
byte publishers = 0;
bool driver_won = false;
byte runs = 0;
byte wake_seq = 0;
byte done = 0;

/* What a reader of a published result must see. */
inline check_read() {
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

proctype driver() {
  byte w;
  result = VALUE;                                   /* written before the claim: the only writer of result */
  w = word;
  do
  :: (w & CLAIMED) != 0 -> break                    /* cancel() won: what was written is dropped */
  :: (w & CLAIMED) == 0 ->
     atomic {                                       /* CAS(w, w | claimed | ready) */
       if
       :: word == w -> word = w | CLAIMED | READY; publishers++; driver_won = true
       :: else -> w = word
       fi
     };
     if
     :: driver_won ->
        if :: (w & WAITING) != 0 -> wake_seq++ :: else -> skip fi;
        if :: (w & CONT) != 0 -> run_continuation() :: else -> skip fi;
        break
     :: else -> skip
     fi
  od;
  done++
}

proctype canceller() {
  byte old, old2;
  atomic { old = word; word = word | CLAIMED };      /* claim(): fetch_or(claimed) */
  if
  :: (old & CLAIMED) != 0 -> skip                    /* the driver published first: cancel is a no-op */
  :: else ->
#ifdef MUTANT_CANCEL_WRITES_RESULT
     result = CANCELLED;
#else
     cancel_flag = true;                            /* fetch_or(holds_cancellation), before the publish */
#endif
     publishers++;
     if
     :: (old & CONT) != 0 ->                         /* publish: plain store, a consumer was there */
        word = old | CLAIMED | READY;
        if :: (old & WAITING) != 0 -> wake_seq++ :: else -> skip fi;
        run_continuation()
     :: else ->
        atomic { old2 = word; word = word | READY }; /* publish: fetch_or(ready) */
        if :: (old2 & WAITING) != 0 -> wake_seq++ :: else -> skip fi;
        if :: (old2 & CONT) != 0 -> run_continuation() :: else -> skip fi
     fi
  fi;
  done++
}

proctype consumer() {
  byte w;
  bool took = false;
  w = word;
  do
  :: (w & READY) != 0 ->
     atomic { if :: word == w -> word = w | CONSUMED; took = true :: else -> w = word fi };
     if :: took -> run_continuation(); break :: else -> skip fi
  :: (w & READY) == 0 ->
     atomic { if :: word == w -> word = w | CONT; took = true :: else -> w = word fi };
     if :: took -> break :: else -> skip fi
  od;
  done++
}

proctype waiter() {
  byte w, seq;
  bool sleeping;
  w = word;
  do
  :: (w & READY) != 0 -> check_read(); break
  :: (w & READY) == 0 && (w & CLAIMED) != 0 -> w = word  /* being published: yield and reload */
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) == 0 ->
     atomic { if :: word == w -> word = w | WAITING; w = w | WAITING :: else -> w = word fi }
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) != 0 ->
     atomic { if :: word != w -> sleeping = false :: else -> sleeping = true; seq = wake_seq fi };
     if :: sleeping -> (wake_seq != seq) :: else -> skip fi;
     w = word
  od;
  done++
}

init {
  atomic { run driver(); run canceller(); run consumer(); run waiter() };
  (done == 4);
  assert(publishers == 1);
  assert(runs == 1)
}
