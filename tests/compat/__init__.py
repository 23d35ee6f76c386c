"""The compatibility suite: each real client's requests, byte for byte in shape, and the
fields that client reads from the answers. One module per client (see the README's
Compatibility section)."""
