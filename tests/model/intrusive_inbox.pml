/* The reactor's multi-producer inbox (executors/include/anydefer/executors/detail/intrusive_inbox.hpp),
 * model-checked with spin: Treiber pushes whose bottom node carries the "last node" mark instead of a written
 * next, against the consumer's take_all() and reversal.
 *
 * Processes: two producers, each pushing two tasks (1, 2 and 3, 4); one consumer taking batches until it has run
 * all four. A link is a task number times two, plus the mark bit. A task's next starts as garbage (a stale
 * pointer from its last trip), which no producer overwrites when the task becomes the bottom node. spin explores
 * every interleaving and checks:
 *   - the consumer never follows a bottom node's next (every next it reads is a link a producer wrote);
 *   - every task runs exactly once, and each producer's tasks run in the order it pushed them.
 *
 * Run: tools/model. It also checks a mutant (MUTANT_IGNORE_MARK: take_all() reads the bottom node's next as if
 * it were 0-terminated) and fails if spin does not find the read of the stale pointer. */

#define MARK 1
#define STALE 14         /* a link to "task 7": no such task here; reading it is the bug */

byte head = 0;
byte next[5];            /* next[t] for tasks 1..4 */
bool ran[5];
byte last_run[2];        /* per producer: the last of its tasks that ran */
byte runs = 0;

inline push(t) {
  byte h = 0, desired;
  do
  :: atomic {
       /* compare_exchange_weak(head, desired): the first guess is "empty" */
       if
       :: h == 0 -> desired = (t) * 2 + MARK          /* bottom node: its next stays as it was */
       :: else -> next[t] = h; desired = (t) * 2
       fi;
       if
       :: head == h -> head = desired; break
       :: else -> h = head
       fi
     }
  od
}

proctype producer(byte first) {
  next[first] = STALE;
  next[first + 1] = STALE;
  push(first);
  push(first + 1)
}

proctype consumer() {
  byte link, node, reversed[4], n, i, t;
  do
  :: runs == 4 -> break
  :: else ->
     if
     :: head == 0 -> skip                           /* empty: nothing to take, poll again */
     :: else ->
        atomic { link = head; head = 0 };          /* exchange(0) */
        n = 0;
        do                                          /* reverse the newest-first stack */
        :: link == 0 -> break
        :: else ->
           node = link / 2;
           assert(node >= 1 && node <= 4);          /* never a stale pointer */
#ifndef MUTANT_IGNORE_MARK
           if :: (link & MARK) != 0 -> link = 0 :: else -> link = next[node] fi;
#else
           link = next[node];
           if :: link == STALE -> assert(false) :: else -> skip fi;
#endif
           reversed[n] = node;
           n++
        od;
        i = n;
        do                                          /* run oldest first */
        :: i == 0 -> break
        :: else ->
           i--;
           t = reversed[i];
           assert(!ran[t]);
           ran[t] = true;
           runs++;
           /* FIFO per producer: tasks 1, 2 come from producer 0; 3, 4 from producer 1 */
           if
           :: t == 1 -> assert(last_run[0] == 0); last_run[0] = 1
           :: t == 2 -> assert(last_run[0] == 1); last_run[0] = 2
           :: t == 3 -> assert(last_run[1] == 0); last_run[1] = 3
           :: t == 4 -> assert(last_run[1] == 3); last_run[1] = 4
           fi
        od
     fi
  od
}

init {
  atomic { run producer(1); run producer(3); run consumer() }
}
