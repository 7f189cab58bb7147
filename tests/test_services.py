"""The test machine's real services answer (PostgreSQL and Redis over TCP on 127.0.0.1)."""

from __future__ import annotations


def test_postgres_answers_in_an_isolated_schema(postgres_dsn: str, pg_schema: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(f'set search_path to "{pg_schema}"')
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (41)")
        row = conn.execute("select x + 1 from t").fetchone()
    assert row == (42,)


def test_redis_answers(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set(redis_prefix + "k", "v", ex=10)
    assert client.get(redis_prefix + "k") == b"v"
    client.close()
