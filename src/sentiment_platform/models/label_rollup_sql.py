"""The SQL that keeps `label_rollups` (0011): triggers on the posts and the review draws, and
the statement that recomputes the cells from the posts (the backfill, `rollups rebuild`).

A label counts in the rollups when its post has a `random` review draw. A post drawn at
random more than once counts once, under its widest random draw: one without a source
filter first, then the earliest `since` (none first), then the latest `until` (none first),
then the first drawn. The cell keeps that draw's reach (`all_sources`, `drawn_since`,
`drawn_until`; the calendar's ends for no time filter), so a read takes the labels whose
draw covers its range (store/label_rollups.py). `GET /api/quality` applies the same rule
post by post (store/labels.py), so the two always agree.

Why triggers: every write that changes a random label's cell (a label set, changed or
cleared, a rescore moving a prediction, a post deleted or marked a copy (`duplicate_of`),
a draw meeting a labelled post)
keeps the cells in step inside the statement that made it, with no extra round trip on
the hot label PUT, and no write path can forget to. Both stores run the same statements;
only the bucket floor, the calendar's ends and the trigger wrappers differ. A cell a move
empties stays at 0 (it adds nothing to a sum) until a rebuild or retention's purge.
"""

from __future__ import annotations

from sentiment_platform.models.database import GRAIN_UNITS, bucket_floor_sql

TABLE = "label_rollups"
KEY = (
    "grain", "bucket_start", "source", "language", "duplicate", "model", "prediction",
    "label", "all_sources", "drawn_since", "drawn_until",
)  # fmt: skip
COLUMNS = ", ".join((*KEY, "count"))
# The widest random draw first (see the module's docstring).
WIDEST_FIRST = "source IS NULL DESC, since ASC NULLS FIRST, until DESC NULLS FIRST, id ASC"
# The calendar's ends, as each store keeps a timestamp: a draw with no time filter.
ENDS = {
    "sqlite": ("'0001-01-01 00:00:00.000000'", "'9999-12-31 23:59:59.999999'"),
    "postgresql": ("'-infinity'::timestamptz", "'infinity'::timestamptz"),
}
_GRAINS = " UNION ALL ".join(f"SELECT '{grain}' AS grain" for grain in GRAIN_UNITS)
_WATCHED = (
    "label_sentiment", "sentiment", "model", "source", "created_at", "language", "duplicate_of",
)  # fmt: skip


def _floor(dialect: str, column: str) -> str:
    """The bucket start of `column` at the row's grain (g.grain). On PostgreSQL floored in
    UTC whatever the session's zone, so a trigger fired from any client agrees."""
    cases = []
    for grain, unit in GRAIN_UNITS.items():
        if dialect == "sqlite":
            floor = bucket_floor_sql(dialect, unit, column)
        else:
            floor = f"date_trunc('{unit.value}', {column}, 'UTC')"
        cases.append(f"WHEN '{grain}' THEN {floor}")
    return f"CASE g.grain {' '.join(cases)} END"


def _cell_values(dialect: str, count: str) -> str:
    earliest, latest = ENDS[dialect]
    return (
        f"g.grain, {_floor(dialect, 'p.created_at')}, p.source, coalesce(p.language, ''), "
        "p.duplicate_of IS NOT NULL, coalesce(p.model, ''), coalesce(p.sentiment, ''), "
        "p.label_sentiment, "
        f"d.source IS NULL, coalesce(d.since, {earliest}), coalesce(d.until, {latest}), {count}"
    )


def widest_draw(post_ref: str, *, columns: str = "source, since, until", but: str = "") -> str:
    """A subquery: the widest random draw of post `post_ref` (excluding draw `but`)."""
    other = f" AND id <> {but}" if but else ""
    return (
        f"(SELECT {columns} FROM review_draws WHERE post_ref = {post_ref} AND strategy = "
        f"'random'{other} ORDER BY {WIDEST_FIRST} LIMIT 1)"
    )


def add_cells(dialect: str, post: str, draw: str, sign: int, where: str = "") -> str:
    """Add `sign` to the cells (three grains) of the post row `post` under draw `draw`
    (FROM items, aliased p and d), if the post is labelled."""
    condition = " AND ".join(filter(None, ("p.label_sentiment IS NOT NULL", where)))
    return (
        f"INSERT INTO {TABLE} ({COLUMNS}) SELECT {_cell_values(dialect, str(sign))} "
        f"FROM {post} AS p, {draw} AS d, ({_GRAINS}) AS g WHERE {condition} "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET count = {TABLE}.count + excluded.count"
    )


def rebuild_sql(dialect: str, *, from_day: bool = True) -> str:
    """Recompute the cells of posts created from `:day` on, or of every post (the caller
    deletes the cells first)."""
    chosen = widest_draw("p.id", columns="id")
    return (
        f"INSERT INTO {TABLE} ({COLUMNS}) SELECT {_cell_values(dialect, 'count(*)')} "
        f"FROM social_media_posts AS p JOIN review_draws AS d ON d.id = {chosen} "
        f"CROSS JOIN ({_GRAINS}) AS g "
        f"WHERE p.label_sentiment IS NOT NULL{' AND p.created_at >= :day' if from_day else ''} "
        f"GROUP BY {', '.join(str(i) for i in range(1, len(KEY) + 1))} "
        # in key order, so a range's cells lie together on disk (as the post rollups')
        f"ORDER BY {', '.join(str(i) for i in range(1, len(KEY) + 1))}"
    )


def _row(alias: str) -> str:
    """A FROM item holding a trigger's OLD or NEW post row's watched columns."""
    return "(SELECT " + ", ".join(f"{alias}.{name} AS {name}" for name in _WATCHED) + ")"


def _bodies(dialect: str) -> dict[str, tuple[str, str, str, list[str]]]:
    """Per trigger: (when it fires, its WHEN condition, a condition that needs a subquery
    (SQLite: part of WHEN; PostgreSQL, whose WHEN takes none: the function's first test),
    its statements)."""
    differs = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    changed = " OR ".join(f"OLD.{name} {differs} NEW.{name}" for name in _WATCHED)
    labelled = "(OLD.label_sentiment IS NOT NULL OR NEW.label_sentiment IS NOT NULL)"
    post = "(SELECT * FROM social_media_posts WHERE id = NEW.post_ref)"
    newest_is_widest = f"{widest_draw('NEW.post_ref', columns='id')} = NEW.id"
    drawn = "(SELECT NEW.source AS source, NEW.since AS since, NEW.until AS until)"
    return {
        "label_rollups_post_update": (
            f"AFTER UPDATE OF {', '.join(_WATCHED)} ON social_media_posts",
            f"{labelled} AND ({changed})",
            "",
            [
                add_cells(dialect, _row("OLD"), widest_draw("OLD.id"), -1),
                add_cells(dialect, _row("NEW"), widest_draw("NEW.id"), 1),
            ],
        ),
        "label_rollups_post_delete": (
            "BEFORE DELETE ON social_media_posts",
            "OLD.label_sentiment IS NOT NULL",
            "",
            [add_cells(dialect, _row("OLD"), widest_draw("OLD.id"), -1)],
        ),
        # A draw that becomes its labelled post's widest moves the post's cells to its reach.
        "label_rollups_draw_insert": (
            "AFTER INSERT ON review_draws",
            "NEW.strategy = 'random'",
            # most draws hand out unlabelled posts: nothing to move, and nothing more read
            "EXISTS (SELECT 1 FROM social_media_posts WHERE id = NEW.post_ref"
            " AND label_sentiment IS NOT NULL)",
            [
                add_cells(
                    dialect, post, widest_draw("NEW.post_ref", but="NEW.id"), -1, newest_is_widest
                ),
                add_cells(dialect, post, drawn, 1, newest_is_widest),
            ],
        ),
    }


def create_triggers(dialect: str) -> list[str]:
    """The DDL that creates the triggers (and on PostgreSQL their functions)."""
    statements = []
    for name, (event, condition, guard, body) in _bodies(dialect).items():
        steps = "".join(f"{statement}; " for statement in body)
        if dialect == "sqlite":
            when = f"{condition} AND {guard}" if guard else condition
            statements.append(
                f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN {when} BEGIN {steps}END"
            )
            continue
        result = "OLD" if event.startswith("BEFORE DELETE") else "NULL"
        test = f"IF NOT ({guard}) THEN RETURN {result}; END IF; " if guard else ""
        statements.append(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {test}"
            f"{steps}RETURN {result}; END $$"
        )
        statements.append(
            f"CREATE TRIGGER {name} {event} FOR EACH ROW WHEN ({condition}) "
            f"EXECUTE FUNCTION {name}()"
        )
    return statements


def drop_triggers(dialect: str) -> list[str]:
    statements = []
    for name, (event, *_) in _bodies(dialect).items():
        table = event.rsplit(" ON ", 1)[1]
        where = "" if dialect == "sqlite" else f" ON {table}"
        statements.append(f"DROP TRIGGER IF EXISTS {name}{where}")
        if dialect != "sqlite":
            statements.append(f"DROP FUNCTION IF EXISTS {name}()")
    return statements
