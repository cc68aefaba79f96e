/* The deferred state word (core/include/anydefer/detail/state.hpp), model-checked with spin.
 *
 * Processes: two firers (callback() twice: one must lose with already_called_error), one consumer (add_callback:
 * attaches a continuation, or finds the result ready and consumes it), one waiter (wait(): sets `waiting` and
 * sleeps on a futex). spin explores every interleaving and checks:
 *   - the continuation runs exactly once, and sees the result (never before it is written);
 *   - exactly one fire wins;
 *   - the waiter never sleeps forever (no invalid end state) and sees the result when it returns.
 * spin's interleavings are sequentially consistent: this checks the protocol's logic. That each acquire/release
 * is strong enough on real hardware is argued next to the code and exercised by the ThreadSanitizer stress tests.
 *
 * Run: tools/model (spin -a, then pan: assertions and invalid end states). It also checks a mutant of the waiter
 * (MUTANT_WAIT_WHILE_CLAIMED) and fails if spin does not find that bug. */

#define CLAIMED  1
#define READY    2
#define CONSUMED 4
#define WAITING  8
#define CONT     16   /* a continuation pointer is in the word */

byte word = 0;
byte result = 0;        /* 0: not written; 1: written by the claimant */
byte runs = 0;          /* times the continuation ran */
byte fire_wins = 0;
byte wake_seq = 0;      /* futex: every wake_all bumps it */
bool attached_or_consumed = false;
byte done = 0;

inline run_continuation() {
  assert(result == 1);
  runs++
}

inline futex_wake_all() {
  wake_seq++
}

proctype firer() {
  byte old, old2;
  atomic { old = word; word = word | CLAIMED }          /* claim(): fetch_or(claimed) */
  if
  :: (old & CLAIMED) != 0 -> skip                        /* lost: already_called_error */
  :: else ->
     fire_wins++;
     result = 1;                                         /* store the result */
     if
     :: (old & CONT) != 0 ->                             /* consumer attached before the claim */
        word = old | CLAIMED | READY;                    /* publish: plain store */
        if :: (old & WAITING) != 0 -> futex_wake_all() :: else -> skip fi;
        run_continuation()
     :: else ->
        atomic { old2 = word; word = word | READY };     /* publish: fetch_or(ready) */
        if :: (old2 & WAITING) != 0 -> futex_wake_all() :: else -> skip fi;
        if :: (old2 & CONT) != 0 -> run_continuation() :: else -> skip fi
     fi
  fi;
  done++
}

proctype consumer() {
  byte w;
  w = word;
  do
  :: (w & (CONSUMED | CONT)) != 0 -> break               /* already_continued_error (not reached here) */
  :: (w & (CONSUMED | CONT)) == 0 && (w & READY) != 0 ->
     atomic {                                            /* CAS(w, w | consumed) */
       if
       :: word == w -> word = w | CONSUMED; attached_or_consumed = true
       :: else -> w = word
       fi
     };
     if :: attached_or_consumed -> run_continuation(); break :: else -> skip fi
  :: (w & (CONSUMED | CONT)) == 0 && (w & READY) == 0 ->
     atomic {                                            /* CAS(w, w | continuation) */
       if
       :: word == w -> word = w | CONT; attached_or_consumed = true
       :: else -> w = word
       fi
     };
     if :: attached_or_consumed -> break :: else -> skip fi
  od;
  done++
}

proctype waiter() {
  byte w, seq;
  bool sleeping;
  w = word;
  do
  :: (w & READY) != 0 -> assert(result == 1); break
#ifndef MUTANT_WAIT_WHILE_CLAIMED
  :: (w & READY) == 0 && (w & CLAIMED) != 0 -> w = word  /* being written: yield and reload */
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) == 0 ->
#else
  /* The bug the real code avoids: setting `waiting` while a claimed result is being written, which the plain
   * store of publish() can then erase, so nobody wakes the waiter. tools/model checks spin finds it. */
  :: (w & READY) == 0 && (w & WAITING) == 0 ->
#endif
     atomic { if :: word == w -> word = w | WAITING; w = w | WAITING :: else -> w = word fi }
#ifndef MUTANT_WAIT_WHILE_CLAIMED
  :: (w & READY) == 0 && (w & CLAIMED) == 0 && (w & WAITING) != 0 ->
#else
  :: (w & READY) == 0 && (w & WAITING) != 0 ->
#endif
     /* futex_wait(word, w): sleeps only if the word still equals w, atomically with that check */
     atomic { if :: word != w -> sleeping = false :: else -> sleeping = true; seq = wake_seq fi };
     if :: sleeping -> (wake_seq != seq) :: else -> skip fi;
     w = word
  od;
  done++
}

init {
  atomic { run firer(); run firer(); run consumer(); run waiter() };
  (done == 4);
  assert(fire_wins == 1);
  assert(attached_or_consumed);
  assert(runs == 1)
}
