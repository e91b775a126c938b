"""``python -m shared.dead_letters list|requeue``: read and replay the dead-letter streams.

A consumer group writes an entry it cannot take to its partition's dead-letter
stream ``events:{pNN}:dead`` (fields ``reason``, ``stream``, ``entry_id``, ``raw``
(JSON of the original fields), ``group``, ``ts``) and acks it, so it is neither
lost nor retried forever (``shared/consumer.py``). This tool is how a person looks
at those entries and, once the cause is fixed, puts them back.

**A dead letter's id is its partition and its entry id**, ``p07/1772190000123-0``:
each partition has its own dead stream, and entry ids of two streams can be equal.
``requeue`` also takes a plain entry id when one partition alone holds it (else it
says which ids to choose from).

``list`` prints the newest dead letters of every partition first, merged by their
``ts`` (entry ids of partitions on different Redis Cluster nodes come from different
clocks), with ``--limit``, and filters ``--stream`` (one kind of stream's),
``--partition`` (one partition's) or ``--channel`` (one channel's, read from its
partition only): the dead letter's id, the stream and entry id it came from, the
group that rejected it, when, why, and its raw fields. It says how many entries the
streams it read hold together.

``requeue`` takes dead-letter ids, or ``--all`` (optionally only ``--stream``'s,
``--partition``'s or ``--channel``'s), oldest first, and for each:

* parses the raw fields with the shared models (:func:`shared.events.parse_fields`).
  An entry that still breaks the contract, whose type does not belong on its
  stream, or whose channel is no longer in that stream's partition (``PARTITIONS``
  changed) is **not** requeued: it stays dead-lettered and the reason is printed;
* otherwise adds the event back to the stream it came from, in the publisher's
  canonical form (``XADD <stream> MAXLEN ~ <STREAM_MAXLEN_*> *``), and removes the
  dead letter (``XDEL``) in one Lua script (the dead stream and that stream share
  the partition's hash tag: on Redis Cluster it runs on one node). The script is
  atomic, as a MULTI/EXEC would be, so nothing is lost or written twice if the
  tool dies midway; it also adds the entry only if *its own* XDEL removed the dead
  letter, which a MULTI/EXEC cannot express, so two people requeueing the same id
  at once add it once;
* one original entry rejected by several groups (``events:{pNN}:lifecycle`` is read
  by ``analytics`` and ``retro``) has one dead letter per group: requeueing any of
  them adds the entry once and removes all of them in the same script.

**The publisher's dedupe is bypassed on purpose.** The original was published
once, so its marker ``dedupe:{pNN}:{source}:{id}`` may still exist, and the
:class:`~shared.publisher.Publisher` would drop the event as a duplicate. But the
consumer rejected that entry (dead-lettered and acked it without applying it), so
its effects never happened: the requeued copy is written with a plain XADD,
under a new entry id, and every group reading the stream gets it once. A group
that had *accepted* the original (possible only when another group's handler
failed on it) sees it a second time; the dry run and the result name such
groups. The only streams with two groups are ``events:{pNN}:lifecycle``, and
neither of their handlers counts a repeated lifecycle event twice (analytics keeps them as
sorted-set members; retro keys its work by stream and segment).

``--dry-run`` prints what would happen and changes nothing. Exit codes: 0 done,
1 some entries were (or, dry, would be) left dead-lettered, or Redis could not be
reached; 2 a usage error. ``REDIS_KEY_PREFIX`` and ``PARTITIONS`` are respected
(``settings.keys``).

The same commands are ``python -m services.ingest dead-letters list|requeue``
(the ingest command line registers this package's parser). The package sits
beside the writer of dead letters, ``shared/consumer.py``, one module per concept:
:mod:`.entries` (reading and checking the dead streams, dead-letter ids),
:mod:`.requeue` (the atomic requeue), :mod:`.report` (what a person reads) and
:mod:`.cli` (the command line).
"""
