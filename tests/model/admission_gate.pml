/* The admission gate an executor's stop() drains (core/include/anydefer/detail/sync/admission_gate.hpp),
 * model-checked with spin: try_enter / enqueue / leave on each producer's own record, against close() and the
 * drained() scan.
 *
 * Processes: two producers entering through their thread records, one late producer (its record is gone at
 * thread exit) entering through the gate's shared counter, each of which posts one task if admitted; and the
 * stopper, which closes the gate and polls drained(). spin explores every interleaving and checks the gate's
 * promise: once drained() has returned true, no producer is inside and none ever enqueues again (each enqueue
 * asserts the stopper has not yet seen the gate drained), and every producer either enqueued or was refused.
 * Sequentially consistent interleavings stand for the light/heavy fence pair (and the late path's seq_cst RMWs),
 * as the header argues.
 *
 * Run: tools/model. It also checks a mutant (MUTANT_NO_RECHECK: try_enter() trusts its first read of the closed
 * flag and does not read it again after publishing its record) and fails if spin does not find the enqueue
 * after drained(). */

bool closed = false;
bool inside[2];        /* each producer's thread record: inside this gate */
byte late_holders = 0;
bool drained_seen = false;
byte tasks = 0;
byte settled = 0;      /* producers that enqueued or were refused */
byte done = 0;

proctype producer(byte me) {
  if
  :: closed -> skip                          /* refused before touching the record */
  :: else ->
     inside[me] = true;                      /* record.inside = gate; light fence */
#ifndef MUTANT_NO_RECHECK
     if
     :: closed -> inside[me] = false         /* refused */
     :: else ->
#else
     if
     :: true ->
#endif
        assert(!drained_seen);               /* enqueue: never after the stopper saw the gate drained */
        tasks++;
        inside[me] = false                   /* leave(): release store */
     fi
  fi;
  settled++;
  done++
}

proctype late_producer() {
  late_holders++;                            /* try_enter_late(): seq_cst increment, then read closed */
  if
  :: closed -> late_holders--
  :: else ->
     assert(!drained_seen);
     tasks++;
     late_holders--                          /* leave() */
  fi;
  settled++;
  done++
}

proctype stopper() {
  closed = true;                             /* close(): seq_cst store */
  do
  :: closed && late_holders == 0 && !inside[0] && !inside[1] -> break   /* drained(): heavy fence, scan */
  :: else -> skip                            /* backoff, then look again */
  od;
  drained_seen = true;
  done++
}

init {
  atomic { run producer(0); run producer(1); run late_producer(); run stopper() };
  (done == 4);
  assert(settled == 3);
  assert(!inside[0] && !inside[1] && late_holders == 0)
}
