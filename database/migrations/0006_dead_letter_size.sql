-- Dead letters keep at most the first 8 KB of a payload (ingest.store.DEAD_LETTER_PAYLOAD_MAX):
-- one flooding or oversized sender cannot fill the disk through them. What was cut is still
-- known: payload_size is the size of the whole payload as it arrived, and payload_sha256 stays the
-- hash of the whole payload (so two dead letters of the same payload are recognised as such).
alter table dead_letters add column payload_size integer;
update dead_letters set payload_size = length(payload) where payload_size is null;
