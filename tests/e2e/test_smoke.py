from tests.helpers import new_channel, pull, register, send


async def test_a_message_to_a_channel_reaches_its_private_device(client):
    key = await register(client)
    cid = await new_channel(client, key)
    sent = await send(client, cid, body="there")
    items = await pull(client, key)
    assert [i["payload"]["message_id"] for i in items] == [sent["message_id"]]
    assert items[0]["payload"]["title"] == "hello"
