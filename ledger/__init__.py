"""The grid's ledger (基础数据, issue 26): the five elements — people, places (buildings, houses),
things (urban parts), organisations and the cases linked to them — with the history of every
record, the review of what members register from the handheld, and personal data private by
design (ledger.privacy). Its words are core.ledger's; its schema is migration 0032's."""
