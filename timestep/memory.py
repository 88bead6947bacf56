"""`Memory`: what an agent has learned, in the same database as its conversations.

Facts (a text, optional subject and tags, where it came from, an optional expiry) and episodes
(the summary of a finished run, with its session and outcome) live in `memory_facts` and
`memory_episodes` (migration 6), so plain SQL can read them. Recall ranks by PostgreSQL
full-text search, the same on PGlite and PostgreSQL: any of the query's words may match, and
matches of more words, closer together, or in the subject rank higher.

Every memory belongs to a scope: "global", "user:<id>" or "agent:<name>". A `Memory` object
works in exactly one scope, and its tools (`as_tools()`) can reach nothing outside it.

With an embedding function (`embed=`: texts -> vectors, sync or async) facts are also stored
as vectors and recall ranks by cosine similarity, through pgvector: PGlite's pgvector package
on the embedded default, the server's extension on PostgreSQL. Where pgvector cannot be
enabled, recall falls back to full-text search and says so once (`VectorRecallUnavailable`).

    memory = Memory(scope="user:alice")
    await memory.remember("Alice's favourite colour is blue", subject="alice", tags=["preferences"])
    [fact] = await memory.recall("what colour does alice like?")
    agent = Agent(name="assistant", tools=[*memory.as_tools()])
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import re
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .durations import ttl_from
from .errors import DatabaseError, InvalidMemory, MemoryNotFound
from .store import Store, open_store
from .store.default import store_or_default
from .store.schema import LOCK_MIGRATIONS

Vectors = Sequence[Sequence[float]]
Embedder = Callable[[list[str]], Union[Vectors, Awaitable[Vectors]]]

MAX_TEXT = 10_000  # characters of a fact's text or an episode's summary
MAX_SUBJECT = 200
MAX_TAGS = 20
_SCOPE = re.compile(r"global|(user|agent):[^\s:][^\s]{0,199}")

_FACT_COLUMNS = "id, scope, text, subject, tags, source_session, source_run, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > now())"
# Any word of the query may match (OR), as recall should; ts_rank_cd favours facts matching
# more of them, closer together, and (weight A) in the subject.
_QUERY = "to_tsquery('english', array_to_string(tsvector_to_array(to_tsvector('english', $2)), ' | '))"
# Tags travel as a JSON array (lists are jsonb parameters on both backends).
_TAGS = "ARRAY(SELECT jsonb_array_elements_text({}::jsonb))"
_FILTERS = f"""
    ($3::text IS NULL OR subject = $3)
    AND ($4::jsonb IS NULL OR tags @> {_TAGS.format("$4")})
    AND ($5::timestamptz IS NULL OR updated_at >= $5)
    AND ($6::timestamptz IS NULL OR updated_at < $6)
"""
_RECALL = f"""
    SELECT {_FACT_COLUMNS}, ts_rank_cd(search, query) AS score
    FROM memory_facts, {_QUERY} AS query
    WHERE scope = $1 AND search @@ query AND {_LIVE} AND {_FILTERS}
    ORDER BY score DESC, updated_at DESC, id DESC
    LIMIT $7
"""
_LIST = f"""
    SELECT {_FACT_COLUMNS}, NULL::real AS score FROM memory_facts
    WHERE scope = $1 AND {_LIVE} AND ($2::text IS NULL OR subject = $2) AND ($3::jsonb IS NULL OR tags @> {_TAGS.format("$3")})
    ORDER BY updated_at DESC, id DESC
    LIMIT $4
"""
_REMEMBER = f"""
    INSERT INTO memory_facts (scope, text, subject, tags, source_session, source_run, expires_at)
    VALUES ($1, $2, $3, {_TAGS.format("$4")}, $5, $6, now() + $7::interval)
    RETURNING {_FACT_COLUMNS}, NULL::real AS score
"""
_UPDATE = f"""
    UPDATE memory_facts
    SET text = coalesce($3, text), subject = coalesce($4, subject),
        tags = CASE WHEN $5::jsonb IS NULL THEN tags ELSE {_TAGS.format("$5")} END, updated_at = now()
    WHERE id = $1 AND scope = $2 AND {_LIVE}
    RETURNING {_FACT_COLUMNS}, NULL::real AS score
"""
_FORGET = "DELETE FROM memory_facts WHERE id = $1 AND scope = $2"

# Vector recall. The extension lives in `public`, so every namespace sees the one type; the
# embeddings table is made on first use (it needs the extension, which migrations cannot
# assume). Facts remembered without the embedding function have no row here.
_ENABLE_VECTORS = [
    LOCK_MIGRATIONS,
    ("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public", []),
    (
        "CREATE TABLE IF NOT EXISTS memory_embeddings ("
        " fact_id bigint PRIMARY KEY REFERENCES memory_facts (id) ON DELETE CASCADE,"
        " embedding public.vector NOT NULL)",
        [],
    ),
]
_REMEMBER_WITH_VECTOR = f"""
    WITH fact AS ({_REMEMBER}),
    embedded AS (INSERT INTO memory_embeddings (fact_id, embedding) SELECT id, $8::public.vector FROM fact)
    SELECT * FROM fact
"""
_UPDATE_WITH_VECTOR = f"""
    WITH fact AS ({_UPDATE}),
    embedded AS (
        INSERT INTO memory_embeddings (fact_id, embedding) SELECT id, $6::public.vector FROM fact
        ON CONFLICT (fact_id) DO UPDATE SET embedding = excluded.embedding
    )
    SELECT * FROM fact
"""
_RECALL_BY_VECTOR = f"""
    SELECT {_FACT_COLUMNS}, (1 - (e.embedding OPERATOR(public.<=>) $2::public.vector))::real AS score
    FROM memory_facts JOIN memory_embeddings e ON e.fact_id = memory_facts.id
    WHERE scope = $1 AND {_LIVE} AND {_FILTERS}
    ORDER BY e.embedding OPERATOR(public.<=>) $2::public.vector, updated_at DESC, id DESC
    LIMIT $7
"""
_EPISODE_COLUMNS = "id, scope, summary, session_id, run_id, outcome, created_at"
_RECORD_EPISODE = f"""
    INSERT INTO memory_episodes (scope, summary, session_id, run_id, outcome) VALUES ($1, $2, $3, $4, $5)
    RETURNING {_EPISODE_COLUMNS}, NULL::real AS score
"""
_RECALL_EPISODES = f"""
    SELECT {_EPISODE_COLUMNS}, ts_rank_cd(search, query) AS score
    FROM memory_episodes, {_QUERY} AS query
    WHERE scope = $1 AND search @@ query
    ORDER BY score DESC, created_at DESC, id DESC
    LIMIT $3
"""
_LIST_EPISODES = f"""
    SELECT {_EPISODE_COLUMNS}, NULL::real AS score
    FROM memory_episodes WHERE scope = $1 ORDER BY created_at DESC, id DESC LIMIT $2
"""


class VectorRecallUnavailable(UserWarning):
    """pgvector cannot be enabled on this store: recall uses full-text search instead."""


@dataclass(frozen=True)
class Fact:
    """One remembered fact. `score` is its recall rank (None when listed)."""

    id: int
    scope: str
    text: str
    subject: str | None
    tags: list[str]
    source_session: str | None
    source_run: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    score: float | None = None


@dataclass(frozen=True)
class Episode:
    """The summary of a finished run, with where it happened and how it ended."""

    id: int
    scope: str
    summary: str
    session_id: str | None
    run_id: str | None
    outcome: str | None
    created_at: dt.datetime
    score: float | None = None


def check_scope(scope: str) -> str:
    """`scope` if it is "global", "user:<id>" or "agent:<name>", else InvalidMemory."""
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
        raise InvalidMemory(f"invalid memory scope {scope!r}: use 'global', 'user:<id>' or 'agent:<name>' (no spaces)")
    return scope


class Memory:
    """Long-term memory of one scope, on a store (default: the process-wide store)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        namespace: str | None = None,
        scope: str = "global",
        embed: Embedder | None = None,
    ) -> None:
        if store is not None and namespace is not None and store.namespace != namespace:
            raise InvalidMemory(
                f"the store is in namespace {store.namespace!r}, not {namespace!r}: give one or the other"
            )
        self.scope = check_scope(scope)
        self.namespace = namespace
        self._store = store
        self._own_store: Store | None = None
        self._embed = embed
        self._vectors: bool | None = None if embed is not None else False  # None: not tried yet

    @property
    def vector_recall(self) -> bool | None:
        """Whether recall ranks by embeddings: None until first used with an embedding function."""
        return self._vectors

    async def _vectors_ready(self, store: Store) -> bool:
        """Enable pgvector and the embeddings table once; on failure, say so and use text search."""
        if self._vectors is None:
            try:
                await store.execute_batch(_ENABLE_VECTORS)
                self._vectors = True
            except DatabaseError as exc:
                self._vectors = False
                warnings.warn(
                    f"vector recall is unavailable on the {store.backend} store at {store.location}: pgvector "
                    f"cannot be enabled ({exc.message}); Memory.recall uses full-text search instead",
                    VectorRecallUnavailable,
                    stacklevel=3,
                )
        return bool(self._vectors)

    async def _vector(self, text: str) -> str:
        """`text`'s embedding as pgvector text ('[0.1,0.2,...]'), checked."""
        assert self._embed is not None
        produced = self._embed([text])
        if inspect.isawaitable(produced):
            produced = await produced
        vectors = list(produced)  # type: ignore[arg-type]
        if len(vectors) != 1:
            raise InvalidMemory(f"the embedding function returned {len(vectors)} vectors for 1 text")
        vector = [float(value) for value in vectors[0]]
        if not vector or not all(math.isfinite(value) for value in vector):
            raise InvalidMemory("the embedding function returned an empty vector or one with NaN or infinity")
        return "[" + ",".join(repr(value) for value in vector) + "]"

    async def store(self) -> Store:
        """The store this memory lives in (a namespace's own store is opened on first use)."""
        if self._store is not None:
            return self._store
        if self.namespace is None:
            return await store_or_default(None)
        if self._own_store is None or self._own_store.closed:
            self._own_store = await open_store(namespace=self.namespace)
        return self._own_store

    async def aclose(self) -> None:
        """Close the store this object opened for its namespace, if it opened one."""
        if self._own_store is not None:
            await self._own_store.aclose()

    # Facts

    async def remember(
        self,
        text: str,
        *,
        subject: str | None = None,
        tags: Sequence[str] = (),
        source_session: str | None = None,
        source_run: str | None = None,
        ttl: float | dt.timedelta | None = None,
    ) -> Fact:
        """Store a fact; it expires after `ttl` (seconds or a timedelta) if one is given."""
        store = await self.store()
        params = [self.scope, _text(text, "fact"), _subject(subject), _tags(tags), source_session, source_run, _ttl(ttl)]
        if await self._vectors_ready(store):
            row = await store.fetchrow(_REMEMBER_WITH_VECTOR, *params, await self._vector(text))
        else:
            row = await store.fetchrow(_REMEMBER, *params)
        assert row is not None
        return Fact(**row)

    async def recall(
        self,
        query: str,
        *,
        subject: str | None = None,
        tags: Sequence[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 10,
    ) -> list[Fact]:
        """The facts of this scope that match `query`, best first, narrowed by subject, tags
        (all of them) and the time they were last updated ([since, until))."""
        _text(query, "query")
        store = await self.store()
        filters = [subject, _tags(tags) if tags is not None else None, since, until, _limit(limit)]
        if await self._vectors_ready(store):
            rows = await store.fetch(_RECALL_BY_VECTOR, self.scope, await self._vector(query), *filters)
        else:
            rows = await store.fetch(_RECALL, self.scope, query, *filters)
        return [Fact(**row) for row in rows]

    async def list(self, *, subject: str | None = None, tags: Sequence[str] | None = None, limit: int = 100) -> list[Fact]:
        """This scope's unexpired facts, most recently updated first."""
        rows = await (await self.store()).fetch(
            _LIST, self.scope, subject, _tags(tags) if tags is not None else None, _limit(limit)
        )
        return [Fact(**row) for row in rows]

    async def update(
        self, fact_id: int, *, text: str | None = None, subject: str | None = None, tags: Sequence[str] | None = None
    ) -> Fact:
        """Change a fact of this scope (and its embedding, with the text); MemoryNotFound if it
        has no such fact."""
        store = await self.store()
        params = [fact_id, self.scope, _text(text, "fact") if text is not None else None, _subject(subject)]
        params.append(_tags(tags) if tags is not None else None)
        if text is not None and await self._vectors_ready(store):
            row = await store.fetchrow(_UPDATE_WITH_VECTOR, *params, await self._vector(text))
        else:
            row = await store.fetchrow(_UPDATE, *params)
        if row is None:
            raise MemoryNotFound(f"no fact {fact_id} in memory scope {self.scope!r}")
        return Fact(**row)

    async def forget(self, fact_id: int) -> None:
        """Delete a fact of this scope; MemoryNotFound if it has no such fact."""
        if await (await self.store()).execute(_FORGET, fact_id, self.scope) == 0:
            raise MemoryNotFound(f"no fact {fact_id} in memory scope {self.scope!r}")

    # Episodes

    async def record_episode(
        self, summary: str, *, session_id: str | None = None, run_id: str | None = None, outcome: str | None = None
    ) -> Episode:
        """Store the summary of a finished run."""
        row = await (await self.store()).fetchrow(
            _RECORD_EPISODE, self.scope, _text(summary, "episode summary"), session_id, run_id, outcome
        )
        assert row is not None
        return Episode(**row)

    async def recall_episodes(self, query: str, *, limit: int = 10) -> list[Episode]:
        """The episodes of this scope that match `query`, best first."""
        _text(query, "query")
        rows = await (await self.store()).fetch(_RECALL_EPISODES, self.scope, query, _limit(limit))
        return [Episode(**row) for row in rows]

    async def list_episodes(self, *, limit: int = 100) -> list[Episode]:
        """This scope's episodes, newest first."""
        return [Episode(**row) for row in await (await self.store()).fetch(_LIST_EPISODES, self.scope, _limit(limit))]

    # Tools

    def as_tools(self) -> list[Any]:
        """`remember`, `recall` and `forget` as Agents SDK function tools, bound to this scope."""
        from .memory_tools import memory_tools  # imports the Agents SDK

        return memory_tools(self)

    def __repr__(self) -> str:
        return f"<Memory scope {self.scope!r}{f' in namespace {self.namespace!r}' if self.namespace else ''}>"


def _text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise InvalidMemory(f"a {what} must be text, not {type(text).__name__}")
    if not text.strip():
        raise InvalidMemory(f"a {what} cannot be empty")
    if len(text) > MAX_TEXT:
        raise InvalidMemory(f"a {what} is limited to {MAX_TEXT:,} characters; this one has {len(text):,}")
    if "\x00" in text:
        raise InvalidMemory(f"a {what} cannot contain a NUL character")
    return text


def _subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT or "\x00" in subject:
        raise InvalidMemory(f"a subject must be non-empty text of at most {MAX_SUBJECT} characters, not {subject!r}")
    return subject


def _tags(tags: Sequence[str] | None) -> list[str]:
    if isinstance(tags, str):
        raise InvalidMemory("tags must be a list of strings, not one string")
    tags = list(tags or [])
    if len(tags) > MAX_TAGS or not all(isinstance(tag, str) and tag.strip() and len(tag) <= MAX_SUBJECT and "\x00" not in tag for tag in tags):
        raise InvalidMemory(f"tags must be at most {MAX_TAGS} non-empty strings of at most {MAX_SUBJECT} characters, not {tags!r}")
    return tags


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidMemory(f"limit must be a positive integer, not {limit!r}")
    return limit


def _ttl(ttl: float | dt.timedelta | None) -> dt.timedelta | None:
    try:
        return ttl_from(ttl)
    except (TypeError, ValueError) as exc:
        raise InvalidMemory(str(exc)) from None
