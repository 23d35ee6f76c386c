"""The compat ingress mapping (pushgo.protocol.compat): compat keys, raw path segments,
route shapes, ntfy priorities and Bark levels to severities, and each dialect's fields onto a
message, as PushGo Gateway v1.2.9 maps them."""

from __future__ import annotations

import msgspec
import pytest

from pushgo.errors import InvalidInput
from pushgo.protocol import compat
from pushgo.protocol import fields as field_rules
from pushgo.protocol import operations as OPS
from pushgo.protocol.ids import encode_channel_id

CHANNEL = encode_channel_id(bytes(range(16)))
KEY = f"{CHANNEL}:secret-pass-1"


def code_of(exc: pytest.ExceptionInfo[InvalidInput]) -> str:
    return exc.value.code


# -- compat keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "channel_id", "password"), [
    ("abc:secret", "abc", "secret"),
    ("  abc : secret  ", "abc", "secret"),
    ("abc:pass:with:colons", "abc", "pass:with:colons"),  # split at the first colon only
    ("abc:p/a%ss", "abc", "p/a%ss"),
])
def test_a_compat_key_splits_into_channel_and_password(raw, channel_id, password):
    assert compat.parse_key(raw) == compat.CompatKey(channel_id, password)


@pytest.mark.parametrize("raw", ["abc", "abc:", ":secret", " : ", "", "abc:   "])
def test_a_compat_key_without_both_halves_is_compat_key_invalid(raw):
    with pytest.raises(InvalidInput) as exc:
        compat.parse_key(raw)
    assert code_of(exc) == "compat_key_invalid"
    assert exc.value.status == 400


# -- paths --------------------------------------------------------------------------------------


def test_path_segments_are_split_on_the_raw_path_then_each_url_decoded():
    raw = b"/bark/abc:p%2Fw/Hello%20%E4%BD%A0/x%3Fy?level=active"
    assert compat.path_segments(raw, b"/bark/") == ["abc:p/w", "Hello 你", "x?y"]
    assert compat.path_segments(b"/ntfy/a%3Ab", b"/ntfy/") == ["a:b"]
    assert compat.path_segments(b"/ntfy/a+b", b"/ntfy/") == ["a+b"]  # + is not a space here
    assert compat.path_segments(b"/other/x", b"/ntfy/") is None


@pytest.mark.parametrize("raw", [b"/ntfy/%FF", b"/ntfy/a%00b"])
def test_a_path_segment_that_is_not_utf8_text_is_a_400(raw):
    with pytest.raises(InvalidInput) as exc:
        compat.path_segments(raw, b"/ntfy/")
    assert code_of(exc) == "invalid_request"


def test_ntfy_shapes():
    one = compat.match_ntfy(["k:p"])
    assert one is not None and one.methods == {"POST", "PUT"} and one.key == "k:p"
    for action in ("publish", "send", "trigger"):
        found = compat.match_ntfy(["k:p", action])
        assert found is not None and found.methods == {"GET", "POST", "PUT"}
    for segments in (["k:p", "other"], ["k:p", "send", "x"], [""], ["k:p", ""]):
        assert compat.match_ntfy(segments) is None


def test_serverchan_shapes_and_its_send_suffix():
    found = compat.match_serverchan(["k:p"])
    assert found is not None and found.methods == {"GET", "POST"} and found.key == "k:p"
    suffixed = compat.match_serverchan(["k:p.send"])
    assert suffixed is not None and suffixed.key == "k:p"
    assert compat.match_serverchan([""]) is None
    assert compat.match_serverchan(["k:p", "x"]) is None


def test_bark_shapes():
    assert compat.match_bark(["push"]) == compat.CompatRoute("bark_push", frozenset({"POST"}))
    assert compat.match_bark(["k:p", "b"]) == compat.CompatRoute(
        "bark", frozenset({"GET"}), key="k:p", body="b")
    assert compat.match_bark(["k:p", "t", "b"]) == compat.CompatRoute(
        "bark", frozenset({"GET"}), key="k:p", title="t", body="b")
    for segments in (["k:p"], ["k:p", "t", "s", "b"], ["k:p", ""], [""]):
        assert compat.match_bark(segments) is None


# -- severities ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("priority", "severity"), [
    ("1", "normal"), ("2", "normal"), ("3", "normal"), ("4", "critical"), ("5", "critical"),
    (" 4 ", "critical"), ("min", "normal"), ("low", "normal"), ("default", "normal"),
    ("high", "critical"), ("urgent", "critical"), ("MAX", "critical"),
    ("0", None), ("6", None), ("", None), (None, None), ("loud", None),
])
def test_ntfy_priority_to_severity(priority, severity):
    assert compat.ntfy_severity(priority) == severity


@pytest.mark.parametrize(("level", "severity"), [
    ("active", "critical"), ("critical", "critical"), ("ACTIVE", "critical"),
    ("timeSensitive", "normal"), ("time-sensitive", "normal"), ("warning", "normal"),
    ("passive", "normal"), ("info", "normal"), ("loud", None), ("", None), (None, None),
])
def test_bark_level_to_severity(level, severity):
    assert compat.bark_severity(level) == severity


def test_every_mapped_severity_is_a_message_severity():
    mapped = set(compat.NTFY_PRIORITY.values()) | set(compat.BARK_LEVEL.values())
    assert mapped <= set(field_rules.SEVERITIES)


# -- ntfy ---------------------------------------------------------------------------------------


def spec_of(req: OPS.MessageIn) -> OPS.OpSpec:
    return OPS.message_spec(req)


def test_ntfy_takes_the_query_first_then_headers_then_the_body():
    req = compat.ntfy_message(KEY, {"title": "Q", "priority": "5", "tags": "a, b,,"},
                              {"title": "H", "priority": "1"}, b"  Backup done \n")
    assert (req.channel_id, req.password) == (CHANNEL, "secret-pass-1")
    assert (req.title, req.body, req.severity, req.tags) == ("Q", "Backup done", "critical",
                                                            ["a", "b"])
    req = compat.ntfy_message(KEY, {}, {"title": " H ", "message": "from header",
                                        "priority": "urgent", "tags": "x,y"}, b"raw")
    assert (req.title, req.body, req.severity, req.tags) == ("H", "from header", "critical",
                                                            ["x", "y"])
    req = compat.ntfy_message(KEY, {"message": "m", "body": "b"}, {}, b"raw")
    assert (req.title, req.body, req.severity) == ("Notification", "m", None)
    assert compat.ntfy_message(KEY, {"body": "b"}, {}, b"raw").body == "b"
    assert compat.ntfy_message(KEY, {}, {"x-title": "X"}, None).title == "X"
    assert compat.ntfy_message(KEY, {}, {}, b"   ").body is None


def test_ntfy_severity_query_wins_over_priority_and_is_read_leniently():
    req = compat.ntfy_message(KEY, {"severity": "low", "priority": "5"}, {}, None)
    assert spec_of(req).severity == "low"
    assert spec_of(compat.ntfy_message(KEY, {"severity": "bogus"}, {}, None)).severity == "normal"


def test_ntfy_passes_the_message_fields_through():
    req = compat.ntfy_message(KEY, {"op_id": "op-1", "url": "https://x.test/a",
                                    "images": "https://x.test/1.png,https://x.test/2.png",
                                    "metadata": '{"k": "v"}', "ttl": "1900000000",
                                    "occurred_at": "1700000000"}, {}, None)
    spec = spec_of(req)
    assert spec.op_id == "op-1" and spec.fields["url"] == "https://x.test/a"
    assert spec.fields["images"] == ["https://x.test/1.png", "https://x.test/2.png"]
    assert spec.fields["metadata"] == {"k": "v"}
    assert spec.occurred_at == 1_700_000_000_000


def test_ntfy_refuses_a_thing_id_before_reading_the_key():
    with pytest.raises(InvalidInput) as exc:
        compat.ntfy_message("no-colon", {"thing_id": "t1"}, {}, None)
    assert code_of(exc) == "thing_id_unsupported_on_ntfy_endpoint"


def test_an_empty_title_is_refused_as_on_post_message():
    with pytest.raises(InvalidInput) as exc:
        spec_of(compat.ntfy_message(KEY, {"title": " "}, {}, None))
    assert code_of(exc) == "title_required"


def test_nul_characters_are_refused_wherever_they_come_from():
    for call in (lambda: compat.ntfy_message(KEY, {}, {}, b"a\x00b"),
                 lambda: compat.ntfy_message(KEY, {}, {"title": "a\x00"}, None),
                 lambda: compat.query_fields([("title", "a\x00")], compat.NTFY_QUERY)):
        with pytest.raises(InvalidInput):
            call()


def test_unknown_query_names_are_refused_and_the_first_of_a_repeat_wins():
    assert compat.query_fields([("title", "a"), ("title", "b")], compat.NTFY_QUERY) == {
        "title": "a"}
    with pytest.raises(InvalidInput) as exc:
        compat.query_fields([("isArchive", "1")], compat.BARK_QUERY)
    assert code_of(exc) == "invalid_query"


# -- ServerChan ---------------------------------------------------------------------------------


def test_serverchan_title_text_desp_body_and_url():
    req = compat.serverchan_message(KEY, {"title": "T", "text": "X", "desp": "D", "body": "B",
                                          "url": " https://x.test "})
    assert (req.title, req.body, req.url) == ("T", "D", " https://x.test ")
    assert req.metadata == {"compat.serverchan.url": "https://x.test"}
    req = compat.serverchan_message(KEY, {"text": "X", "body": "B"})
    assert (req.title, req.body, req.metadata) == ("X", "B", {})
    assert compat.serverchan_message(KEY, {}).title == "Notification"


def test_serverchan_form_bodies():
    fields = compat.form_fields(b"title=a+b&desp=%E4%BD%A0%0Aline", compat.SERVERCHAN_FIELDS)
    assert fields == {"title": "a b", "desp": "你\nline"}
    with pytest.raises(InvalidInput):
        compat.form_fields(b"tags=x", compat.SERVERCHAN_FIELDS)


# -- Bark ---------------------------------------------------------------------------------------


def test_bark_get_maps_path_level_and_sound_icon_group():
    route = compat.CompatRoute("bark", frozenset({"GET"}), key=KEY, title="T", body="B")
    req = compat.bark_message(route, {"level": "timeSensitive", "sound": " bell ",
                                      "icon": "https://x.test/i.png", "group": "nas",
                                      "url": "https://x.test", "tags": "a,b",
                                      "metadata": '{"compat.bark.sound": "mine", "k": 1}'})
    assert (req.title, req.body, req.severity, req.url, req.tags) == (
        "T", "B", "normal", "https://x.test", ["a", "b"])
    assert req.metadata == {"compat.bark.sound": "bell", "compat.bark.icon": "https://x.test/i.png",
                            "compat.bark.group": "nas", "k": 1}
    body_only = compat.CompatRoute("bark", frozenset({"GET"}), key=KEY, body="B")
    assert compat.bark_message(body_only, {}).title == "Notification"


def test_bark_push_json():
    req = compat.bark_push_message(msgspec.convert(
        {"device_key": KEY, "title": "T", "body": "B", "level": "active", "sound": "s",
         "tags": ["x"], "images": ["https://x.test/1.png"], "metadata": {"a": "b"}},
        compat.BarkPushIn))
    assert (req.channel_id, req.title, req.body, req.severity) == (CHANNEL, "T", "B",
                                                                   "critical")
    assert req.metadata == {"a": "b", "compat.bark.sound": "s"}
    assert (req.tags, req.images) == (["x"], ["https://x.test/1.png"])
    bare = compat.bark_push_message(compat.BarkPushIn(device_key=KEY))
    assert (bare.title, bare.body, bare.severity, bare.metadata) == ("Notification", None, None,
                                                                     {})
    with pytest.raises(InvalidInput) as exc:
        compat.bark_push_message(compat.BarkPushIn(device_key="nokey"))
    assert code_of(exc) == "compat_key_invalid"


# -- logs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "shown"), [
    ("/ntfy/cid:secret", "/ntfy/{topic}"),
    ("/ntfy/cid:secret/publish", "/ntfy/{topic}/publish"),
    ("/ntfy/cid:se/cret", "/ntfy/{topic}"),
    ("/serverchan/cid:secret.send", "/serverchan/{sendkey}"),
    ("/bark/cid:secret/Title/Body", "/bark/{device_key}/…"),
    ("/bark/push", "/bark/push"),
    ("/message", "/message"),
])
def test_a_compat_path_is_logged_without_its_key(path, shown):
    assert compat.loggable_path(path) == shown
