"""warp-link resume books: what a returning app's token and last_acked_seq acknowledge."""

from __future__ import annotations

from pushgo.delivery.private_link.resume import ResumeBooks


def test_a_matching_token_acknowledges_what_was_sent_up_to_the_seq() -> None:
    books = ResumeBooks()
    token, acked = books.begin("dev", None, None)
    assert token and acked == []
    for seq, delivery_id in ((3, "a"), (7, "b"), (9, "c")):
        books.sent("dev", delivery_id, seq)
    books.acked("dev", "a")
    again, acked = books.begin("dev", token, 7)
    assert (again, acked) == (token, ["b"])  # a was acked already, c is past 7
    assert books.begin("dev", token, 9) == (token, ["c"])


def test_a_wrong_token_or_an_unsent_seq_starts_afresh() -> None:
    books = ResumeBooks()
    token, _ = books.begin("dev", None, None)
    books.sent("dev", "a", 5)
    fresh, acked = books.begin("dev", "not-the-token", 5)
    assert fresh != token and acked == []
    books.sent("dev", "b", 6)
    other, acked = books.begin("dev", fresh, 99)  # never sent: not taken on its word
    assert other != fresh and acked == []
    assert books.begin("elsewhere", other, 6)[1] == []  # tokens are per device


def test_the_books_are_bounded() -> None:
    books = ResumeBooks(max_devices=2, max_sent=3)
    tokens = {key: books.begin(key, None, None)[0] for key in ("a", "b", "c")}
    assert books.begin("a", tokens["a"], None)[0] != tokens["a"]  # "a" was evicted
    token = books.begin("d", None, None)[0]
    for seq in range(1, 6):
        books.sent("d", f"x{seq}", seq)
    assert books.begin("d", token, 5) == (token, ["x3", "x4", "x5"])  # the oldest went
