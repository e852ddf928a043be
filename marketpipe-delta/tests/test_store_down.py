"""A store delta-rs gave up on is taken for down, as the Parquet sink's store is: the job's
other requests to it fail at once instead of each waiting out the retry policy again (a job
on a Delta dataset took three policies' time to stop when its store went away)."""

from __future__ import annotations

import pytest
from marketpipe.model.errors import StoreFailedError, StoreUnavailableError
from marketpipe.storage import object_store
from marketpipe_delta.tables import guarded, one_line

#: What delta-rs says of a request its object store retried until the policy ran out.
UNANSWERED = (
    "Kernel error -> Generic S3 error: Error performing GET http://127.0.0.1:9/bars/team/"
    "_delta_log/00000000000000000004.json in 6.6s, after 5 retries, max_retries: 5, "
    "retry_timeout: 5s  - HTTP error: error sending request"
)


@pytest.fixture(autouse=True)
def nothing_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(object_store, "_DOWN", {})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


def test_a_request_unanswered_through_every_retry_takes_the_store_for_down() -> None:
    error = one_line("s3://bars/team/fake/sim/raw/1m", OSError(UNANSWERED))
    assert isinstance(error, StoreUnavailableError)  # temporary: the same command later
    asked: list[str] = []
    with pytest.raises(StoreUnavailableError, match="after 5 retries"):
        guarded("s3://bars/team/_marketpipe/coverage", lambda: asked.append("coverage"))
    with pytest.raises(StoreUnavailableError):  # the Parquet sink's store, the ledger's too
        object_store.fail_if_down("s3://bars/other", retry_seconds=300)
    assert asked == []  # failed at once, never sent
    # Another bucket, or the same one behind another endpoint, is another store.
    assert guarded("s3://elsewhere/team", lambda: "read") == "read"
    object_store.fail_if_down("s3://bars/team", 300, {"AWS_ENDPOINT_URL": "http://other:9"})


def test_the_store_is_asked_again_once_the_policys_time_has_passed() -> None:
    one_line("s3://bars/team", OSError(UNANSWERED))
    object_store.fail_if_down("s3://bars/team", retry_seconds=0)  # nothing raised


def test_a_refusal_that_is_no_outage_leaves_the_store_up() -> None:
    error = one_line("s3://bars/team", ValueError("Schema error: Invalid data type for Delta"))
    assert type(error) is StoreFailedError
    assert guarded("s3://bars/team", lambda: "read") == "read"


def test_a_local_table_is_never_taken_for_down() -> None:
    assert isinstance(one_line("/data/fake/sim/raw/1m", OSError(UNANSWERED)), StoreUnavailableError)
    assert object_store._DOWN == {}
