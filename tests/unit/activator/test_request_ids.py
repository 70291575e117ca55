"""Request ids are what Lambda's are: random UUIDs (version 4), unless the caller gave one."""

from __future__ import annotations

import uuid

from kfn.activator import invoke_api


def test_a_new_request_id_is_a_version_4_uuid_of_the_rfc_variant() -> None:
    parsed = uuid.UUID(invoke_api.request_id().decode())
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122


def test_request_ids_do_not_repeat_across_refills_of_the_random_buffer() -> None:
    ids = {invoke_api.request_id() for _ in range(2000)}  # about eight refills
    assert len(ids) == 2000
    assert all(uuid.UUID(i.decode()).version == 4 for i in ids)


def test_a_callers_request_id_is_kept_as_it_was_given() -> None:
    assert invoke_api.request_id(b"57a57dd4b2d0-2") == b"57a57dd4b2d0-2"
