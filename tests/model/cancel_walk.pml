/* A link letting go of the deferred its callback returned, against cancel() walks
 * (core/include/anydefer/detail/state.hpp, "Lifetime" and publish_written_unless_walked(); link.hpp,
 * publish_letting_go_of_inner(); state.cpp, state_base::cancel()), model-checked with spin.
 *
 * A walk holds no references: it reads a link's "what am I waiting on" pointer and then looks at the state it
 * names, kept alive only by the link's reference. The link, once it has taken that state's result, clears the
 * pointer, publishes its own result with one RMW on its word (claimed) and, if that RMW did not find the word
 * marked `walked`, lets go of its reference (the last one, so the state is freed); otherwise it keeps it until it
 * is freed itself. A walk marks the link's word with an RMW, stops if that RMW finds the link claimed, and only
 * then reads the pointer and, if it still names the state, looks at it twice (its claimed flag, then its own
 * pointer or cancel_here()). Processes: the link and two walks; spin explores every interleaving and checks that
 * no walk looks at a freed state. Each atomic block is one RMW on the link's word.
 *
 * Run: tools/model. spin's interleavings are sequentially consistent, which the RMWs on the link's word are; a
 * plain load after a store is not (x86 lets it pass the store), so the mutant that replaces the link's RMW with
 * a plain read of the mark lets that read come first. It also checks two mutants and fails if spin does not find
 * a walk looking at the freed state in each: MUTANT_WALK_WITHOUT_MARK (the walk follows the pointer without
 * marking the link) and MUTANT_PLAIN_READ_OF_MARK (the link decides on a plain load of the mark instead of its
 * publishing RMW, and lets go before it publishes). */

bool points_to_inner = true;  /* the link's awaited_ still names the state its callback returned */
bool walked = false;          /* the link's word: a walk marked it */
bool claimed = false;         /* the link's word: it published (or was cancelled) */
bool inner_freed = false;
byte done = 0;

proctype walk() {
  bool stopped = false;
  bool names_inner = false;
#ifndef MUTANT_WALK_WITHOUT_MARK
  atomic {                                    /* fetch_or(walked): the old word says whether it was claimed */
    if
    :: claimed -> stopped = true
    :: else -> walked = true
    fi
  }
#endif
  names_inner = points_to_inner;              /* awaited(), after the mark */
  if
  :: !stopped && names_inner ->
     assert(!inner_freed);                    /* is_claimed() */
     assert(!inner_freed)                     /* awaited() or cancel_here() */
  :: else -> skip                             /* stopped at the link, or its pointer was already cleared */
  fi;
  done++
}

proctype link() {
  bool let_go = false;
#ifndef MUTANT_PLAIN_READ_OF_MARK
  points_to_inner = false;                    /* on_ready(): awaited_ = nullptr */
  atomic {                                    /* the publishing CAS: claims, and reads the mark */
    let_go = !walked;
    claimed = true
  }
  if
  :: let_go -> inner_freed = true             /* the last reference: freed */
  :: else -> skip                             /* a walk passed: dispose() lets go later */
  fi;
#else
  let_go = !walked;                           /* a plain load of the mark, passing the store below */
  points_to_inner = false;
  if
  :: let_go -> inner_freed = true
  :: else -> skip
  fi;
  claimed = true;
#endif
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
