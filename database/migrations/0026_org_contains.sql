-- Org-code containment, the one way SQL says it (core/orgcodes.contains says it in Python): true
-- when `code` lies within the org unit `scope` or is it; '' is the whole city, and a null code lies
-- in no unit. Codes are all digits (core/orgcodes validates them), so the scope needs no escaping
-- in the pattern. Each is one `language sql` expression, immutable and not strict: the planner
-- inlines it into the query and folds `scope || '%'` of a given scope into a constant pattern, so a
-- scoped query keeps the plan `like '<code>%'` had (the text_pattern_ops indexes on org_code, the
-- grid_code indexes). Two, for the two types codes are kept in: a char(15) grid_code cast to text
-- would be a function of the column, which neither an index nor the column's statistics serve.
create function org_contains(scope text, code text) returns boolean
    language sql immutable parallel safe
    as $$ select code like scope || '%' $$;

create function org_contains(scope text, code char) returns boolean
    language sql immutable parallel safe
    as $$ select code like scope || '%' $$;
