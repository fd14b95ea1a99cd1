-- The basic-data page's search by a name's start (ledger/reads.py), ordered by the name in byte order
-- (collate "C": Chinese names by code point, English by letter), reads a range of one of these in
-- order and stops at the page's 50 rows: no sort of every match. A common surname city-wide matches
-- ~10^5 residents of 2 million, which migration 0032's text_pattern_ops indexes find but must sort
-- (text_pattern_ops gives LIKE a range, never an order; a "C"-collated index gives both).
create index residents_name_c on residents (name collate "C");
create index residents_grid_name_c on residents (grid_code, name collate "C");
