/* The coroutine's awaiting slot (awaiting_slot in core/include/anydefer/coroutine.hpp), model-checked with spin:
 * the split reference count that lets cancel() on another thread use "the deferred the coroutine awaits" while
 * that deferred fires, the coroutine resumes and its awaiter drops the last reference.
 *
 * The slot word holds (borrowers, awaited pointer, pending). Processes:
 *   owner      the coroutine's awaiter: begin(S) before attaching, end() once S fired, then drops its own
 *              reference to S (the one that kept S alive through the await);
 *   canceller  (two of them) cancel() on the coroutine's deferred: borrows the pointer (or, if there is none yet,
 *              sets `pending` so that begin() cancels S), uses S, gives the borrow back (on the word if the await
 *              is still on, else on S's borrow balance).
 * spin explores every interleaving and checks:
 *   - nobody uses S after it was freed (each use asserts it is alive);
 *   - S is freed exactly once, and only when every reference and borrow is gone (the count never goes below
 *     zero; at the end S is freed);
 *   - a cancel() that came before begin() is not lost: S is cancelled by begin().
 * Sequentially consistent interleavings: this checks the protocol's logic; the memory orders are argued at the
 * code and exercised by the ThreadSanitizer stress tests.
 *
 * Run: tools/model. It also checks a mutant (MUTANT_END_WITHOUT_REFERENCE: end() does not take the reference the
 * borrowers still out need) and fails if spin does not find that use after free. */

#define PENDING 1

byte borrowers = 0;     /* the word: borrowers, pointer (awaited: 0 or 1 for S), pending */
bool awaited = false;
bool pending = false;

byte refs = 1;          /* S's references: the awaiter's own */
short balance = 0;      /* S's borrow_balance_ */
bool freed = false;
bool cancelled = false; /* S was cancelled (by a canceller, or by begin() for a pending cancel) */
bool begun = false;
bool early_cancel = false;  /* a cancel() came before begin(), when the coroutine awaited nothing yet */
byte done = 0;

inline release() {      /* state_base::release(S) */
  atomic { assert(refs > 0); refs--; if :: refs == 0 -> freed = true :: else -> skip fi }
}

inline use_s() {        /* S->cancel(): touches S */
  assert(!freed);
  cancelled = true
}

proctype owner() {
  byte n;
  short old;
  /* begin(S): exchange(S) */
  atomic { awaited = true; begun = true; if :: pending -> pending = false; n = 1 :: else -> n = 0 fi };
  if :: n == 1 -> use_s() :: else -> skip fi;
  /* ... S fires, the coroutine resumes ... end(): exchange(0) */
  atomic { n = borrowers; borrowers = 0; awaited = false };
  if
  :: n != 0 ->
#ifndef MUTANT_END_WITHOUT_REFERENCE
     atomic { refs++ };                                   /* add_ref_racing_borrowers() */
     atomic { old = balance; balance = balance + n };     /* borrow_balance_.fetch_add(n) */
     if :: old + n == 0 -> release() :: else -> skip fi
#else
     skip
#endif
  :: else -> skip
  fi;
  release();                                              /* the awaiter's own reference goes */
  done++
}

proctype canceller() {
  bool borrowed = false;
  short old;
  /* cancel_awaited(): borrow the pointer, or leave `pending` for begin() */
  atomic {
    if
    :: awaited -> borrowers++; borrowed = true
    :: else -> pending = true; if :: !begun -> early_cancel = true :: else -> skip fi
    fi
  };
  if
  :: borrowed ->
     use_s();
     /* give_back(S): on the word while the await is on, else on S's balance */
     atomic {
       if
       :: awaited -> borrowers--; borrowed = false
       :: else -> skip
       fi
     };
     if
     :: borrowed ->
        atomic { old = balance; balance = balance - 1 };
        if :: old - 1 == 0 -> release() :: else -> skip fi
     :: else -> skip
     fi
  :: else -> skip
  fi;
  done++
}

init {
  atomic { run owner(); run canceller(); run canceller() };
  (done == 3);
  assert(freed);
  assert(refs == 0);
  assert(balance == 0);
  /* a cancel that came before begin() was not lost (one after end() rightly finds nothing to cancel) */
  assert(!early_cancel || cancelled)
}
