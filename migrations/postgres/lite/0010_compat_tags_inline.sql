-- The tagvalues stay in the event's row, compressed, unless the row would not fit in a page; the
-- 32- and 64-byte keys never leave it.
--
-- With the default storage (EXTENDED) and toast_tuple_target = 512 (0001), every event above
-- 2 kB had its tags moved to the TOAST table: reading a contact list (kind 3, a hundred `p`
-- tags) cost its row, the TOAST index and one or two TOAST pages, about 5.4 pages an event.
-- MAIN compresses them in the row and moves them out only past the page (about 8 kB).
-- The keys are PLAIN: with the tags kept in, a large row is still above the 512-byte target,
-- and the TOAST rules would otherwise move the next largest values out of it, the signature, id
-- and pubkey, into three TOAST rows of their own.
--
-- Rows written before this keep their layout until they are rewritten (VACUUM FULL).
ALTER TABLE event ALTER COLUMN tagvalues SET STORAGE MAIN;
ALTER TABLE event ALTER COLUMN id SET STORAGE PLAIN;
ALTER TABLE event ALTER COLUMN pubkey SET STORAGE PLAIN;
