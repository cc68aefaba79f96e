/* A link letting go of the deferred its callback returned, against cancel() walks
 * (core/include/anydefer/detail/state.hpp, cancel_walks; link.hpp, let_go_of_inner(); state.cpp,
 * state_base::cancel()), model-checked with spin.
 *
 * A walk holds no references: it reads a consumer's "what am I waiting on" pointer and then looks at the state
 * it names, kept alive only by that consumer's reference. A link that has taken the result of the deferred its
 * handler returned lets go of the reference at once (which may free it) unless a walk is in progress.
 * Processes: the link, which clears its pointer and then reads the count of walks, freeing the consumed state
 * only if it reads zero (otherwise dispose() lets go later); and two walks, each announcing itself, reading the
 * pointer and, if it still names the state, looking at it twice (its claimed flag, then its own pointer or
 * cancel_here()), then ending its announcement. spin explores every interleaving and checks that no walk looks
 * at a freed state. Sequentially consistent interleavings stand for the seq_cst fence each side has between its
 * write and its read.
 *
 * Run: tools/model. It also checks a mutant (MUTANT_READ_BEFORE_CLEARING: the link reads the count before it
 * clears its pointer) and fails if spin does not find the walk looking at the freed state. */

bool points_to_consumed = true;  /* the link's awaited_ still names the state it consumed */
bool consumed_freed = false;
byte walks = 0;
byte done = 0;

proctype walk() {
  walks++;                                   /* announce: fetch_add, seq_cst fence */
  if
  :: points_to_consumed ->                   /* read awaited_: the consumed state */
     assert(!consumed_freed);                /* is_claimed() */
     assert(!consumed_freed)                 /* awaited() or cancel_here() */
  :: else -> skip                            /* null: the walk stops at the link */
  fi;
  walks--;                                   /* end of the announcement: release */
  done++
}

proctype link() {
  byte seen;
#ifndef MUTANT_READ_BEFORE_CLEARING
  points_to_consumed = false;                /* awaited_ = nullptr; seq_cst fence */
  seen = walks;                              /* acquire load of the count */
#else
  seen = walks;
  points_to_consumed = false;
#endif
  if
  :: seen == 0 -> consumed_freed = true      /* let go at once: the last reference, so freed */
  :: else -> skip                            /* a walk is in progress: dispose() lets go later */
  fi;
  done++
}

init {
  atomic {
    run link();
    run walk();
    run walk()
  }
  (done == 3)
}
