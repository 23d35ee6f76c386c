"""The Live Activity payload builders (APNs liveactivity pushes, the FCM ongoing
notification fields): pure, from an event operation's stored payload."""

from __future__ import annotations

import json

from pushgo.protocol import liveactivity as LA

SENT_MS = 1_800_000_000_123
EXPIRES_MS = SENT_MS + 3_600_000


def event_data(**extra: str) -> dict[str, str]:
    data = {"channel_id": "06ABCDEF", "event_id": "ev1", "event_state": "ONGOING",
            "sent_at": str(SENT_MS), "severity": "high", "status": "Open",
            "title": "Door open"}
    data.update(extra)
    return data


def aps_of(payload: LA.LiveActivityPayload | None) -> dict[str, object]:
    assert payload is not None
    doc = json.loads(payload.body)
    assert list(doc) == ["aps"]
    aps: dict[str, object] = doc["aps"]
    return aps


def build(route: str, data: dict[str, str] | None = None, *, title: str = "Door open",
          body: str = "Rear door") -> LA.LiveActivityPayload | None:
    return LA.build_apns(data or event_data(), route, title=title, body=body,
                         expires_at_ms=EXPIRES_MS)


def test_routes_map_onto_activity_events():
    assert LA.live_event("event.create") == "start"
    assert LA.live_event("event.update") == "update"
    assert LA.live_event("event.close") == "end"
    assert LA.live_event("message.create") is None
    assert LA.live_event("thing.update") is None
    assert build("message.create") is None


def test_create_is_a_push_to_start_with_attributes_alert_and_stale_date():
    aps = aps_of(build("event.create"))
    assert aps["event"] == "start"
    assert aps["timestamp"] == SENT_MS // 1000
    assert aps["attributes-type"] == "PushGoEventActivityAttributes"
    assert aps["attributes"] == {"eventID": "ev1", "channelID": "06ABCDEF"}
    assert aps["alert"] == {"title": "Door open", "body": "Rear door"}
    assert aps["stale-date"] == EXPIRES_MS // 1000
    assert "dismissal-date" not in aps
    state = aps["content-state"]
    assert state == {"title": "Door open", "state": "ONGOING", "severity": "high",
                     "status": "Open", "body": "Rear door",
                     "updatedAt": round(SENT_MS / 1000 - LA.APPLE_EPOCH_S, 3)}


def test_update_carries_the_new_state_and_alerts_only_when_severe():
    severe = aps_of(build("event.update"))
    assert severe["event"] == "update" and "attributes" not in severe
    assert "attributes-type" not in severe and severe["stale-date"] == EXPIRES_MS // 1000
    assert severe["alert"] == {"title": "Door open", "body": "Rear door"}
    quiet = aps_of(build("event.update", event_data(severity="normal", status="Closing")))
    assert "alert" not in quiet
    assert quiet["content-state"]["status"] == "Closing"  # type: ignore[index]


def test_close_ends_with_a_dismissal_date_and_no_stale_date():
    aps = aps_of(build("event.close", event_data(event_state="CLOSED")))
    assert aps["event"] == "end"
    assert aps["dismissal-date"] == SENT_MS // 1000 + LA.DISMISS_AFTER_S
    assert "stale-date" not in aps and "alert" not in aps and "attributes" not in aps
    assert aps["content-state"]["state"] == "CLOSED"  # type: ignore[index]


def test_stale_date_is_never_before_the_timestamp():
    payload = LA.build_apns(event_data(), "event.update", title="t", body="b",
                            expires_at_ms=SENT_MS - 5000)
    assert aps_of(payload)["stale-date"] == SENT_MS // 1000 + 1


def test_long_texts_are_shortened_to_fit_4096_bytes():
    body = "界" * 3000  # 9000 bytes of UTF-8
    payload = build("event.create", title="T" * 2000, body=body)
    assert payload is not None and payload.size <= LA.PAYLOAD_LIMIT
    aps = aps_of(payload)
    assert aps["alert"]["body"] == body[:len(aps["alert"]["body"])]  # type: ignore[index]
    assert 0 < len(aps["content-state"]["body"]) < len(body)  # type: ignore[index]
    small = build("event.create")
    assert small is not None and b"Rear door" in small.body


def test_a_payload_that_cannot_fit_is_none():
    huge = event_data(status="s" * 5000)  # not a text the builder shortens
    assert build("event.create", huge) is None


def test_the_payload_is_the_same_bytes_for_every_device():
    payload = build("event.update")
    assert payload is not None
    assert payload.render("a" * 32, "dev1") == payload.render("b" * 32) == payload.body


def test_fcm_fields_tag_one_notification_per_event_and_end_it_on_close():
    data = event_data()
    created = LA.fcm_fields(data, "event.create")
    updated = LA.fcm_fields(data, "event.update")
    closed = LA.fcm_fields(data, "event.close")
    tag = "pushgo.event.06ABCDEF.ev1"
    assert created == {"live_activity": "start", "live_tag": tag, "live_ongoing": "1"}
    assert updated == {"live_activity": "update", "live_tag": tag, "live_ongoing": "1"}
    assert closed == {"live_activity": "end", "live_tag": tag, "live_ongoing": "0"}
    assert LA.fcm_fields(data, "message.create") == {}
    other = LA.fcm_fields(event_data(event_id="ev2"), "event.update")
    assert other["live_tag"] != tag
