"""The tables. One ``MetaData``; every store module builds its queries from these objects.

Times are epoch milliseconds (BigInteger). JSON-shaped columns are Text holding JSON.
Must not import anything from pushgo but the protocol package.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression

metadata = sa.MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ms = sa.BigInteger

schema_info = sa.Table(
    "pushgo_schema", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("migrated_at", Ms, nullable=False),
)

channels = sa.Table(
    "channels", metadata,
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("channel_name", sa.String(512), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("device_key", sa.String(128), primary_key=True),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("channel_type", sa.String(16), nullable=False),
    sa.Column("provider_token", sa.String(4096), nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    # The app whose credentials its provider deliveries use (pushgo.protocol.apps); NULL: the
    # ``default`` app of the PUSHGO_APNS_*/FCM_*/WNS_* settings.
    sa.Column("app", sa.String(64), nullable=True),
    sa.Index("ix_devices_token", "platform", "provider_token"),
)

subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("channel_id", sa.String(26),
              sa.ForeignKey("channels.channel_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("device_key", sa.String(128),
              sa.ForeignKey("devices.device_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Index("ix_subscriptions_device", "device_key"),
)

#: One row per accepted operation (message, event or thing change): the op_id registry, the
#: payload shared by every delivery of the fan-out, and what the caller was answered.
operations = sa.Table(
    "operations", metadata,
    sa.Column("op_pk", BigId, primary_key=True, autoincrement=True),
    sa.Column("channel_id", sa.String(26), nullable=False),
    sa.Column("op_id", sa.String(128), nullable=False),
    sa.Column("route", sa.String(32), nullable=False),
    sa.Column("entity_type", sa.String(16), nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("thing_id", sa.String(64), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    # {"title", "body", "thread"}: the notification texts providers show.
    sa.Column("alert", sa.Text, nullable=False, server_default="{}"),
    sa.Column("recipients", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    # A scheduled send: its deliveries wait (state ``scheduled``) until then. NULL: at once.
    sa.Column("deliver_at", Ms, nullable=True),
    # The key it was accepted under (pushgo.service.principal): ``root`` for the gateway
    # token; quotas count and the dispatcher shares by it.
    sa.Column("sender", sa.String(40), nullable=False, server_default="root"),
    sa.UniqueConstraint("channel_id", "op_id", name="uq_operations_op"),
    # Delivery status reads every operation of one op_id, whatever its channel.
    sa.Index("ix_operations_op_id", "op_id"),
)

messages = sa.Table(
    "messages", metadata,
    sa.Column("message_id", sa.String(32), primary_key=True),
    sa.Column("channel_id", sa.String(26), nullable=False),
    sa.Column("op_pk", BigId, nullable=False),
    sa.Column("thing_id", sa.String(64), nullable=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("occurred_at", Ms, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Index("ix_messages_channel", "channel_id", "created_at"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("thing_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("status", sa.String(64), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("severity", sa.String(16), nullable=True),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("images", sa.Text, nullable=True),
    sa.Column("attrs", sa.Text, nullable=False, server_default="{}"),
    sa.Column("started_at", Ms, nullable=True),
    sa.Column("ended_at", Ms, nullable=True),
    sa.Column("event_time", Ms, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index("ix_events_channel_state", "channel_id", "state", "updated_at"),
)

things = sa.Table(
    "things", metadata,
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("thing_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("tags", sa.Text, nullable=True),
    sa.Column("primary_image", sa.Text, nullable=True),
    sa.Column("images", sa.Text, nullable=True),
    sa.Column("external_ids", sa.Text, nullable=False, server_default="{}"),
    sa.Column("location_type", sa.String(16), nullable=True),
    sa.Column("location_value", sa.String(512), nullable=True),
    sa.Column("attrs", sa.Text, nullable=False, server_default="{}"),
    sa.Column("observed_at", Ms, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Column("archived_at", Ms, nullable=True),
    sa.Column("deleted_at", Ms, nullable=True),
    sa.Index("ix_things_channel_state", "channel_id", "state", "updated_at"),
)

#: The outbox: one row per (operation, device). ``state`` is the provider send state
#: (queued → sent / failed / expired; a scheduled send's wait as ``scheduled`` until its
#: ``deliver_at`` in ``next_attempt_at``, and either may end ``cancelled``); ``inbox`` says
#: the device can still fetch the payload (private stream, /messages/pull) until it
#: acknowledges or pulls it, or it expires.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(32), nullable=False, unique=True),
    sa.Column("op_pk", BigId, nullable=False),
    sa.Column("channel_id", sa.String(26), nullable=False),
    sa.Column("device_key", sa.String(128), nullable=False),
    sa.Column("route", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("inbox", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Ms, nullable=False),
    # Set while a dispatcher holds the delivery; a dead process's leases run out.
    sa.Column("lease_until", Ms, nullable=True),
    sa.Column("last_error", sa.String(255), nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    # A direct send (POST /messages/bulk with ``tokens``) has no registered device: the
    # provider token travels on the delivery, and ``device_key`` is ``"direct"``. NULL: the
    # device's current token is used.
    sa.Column("provider_token", sa.String(4096), nullable=True),
    # The process identity that holds the lease (``lease_until``): a process restarted under
    # the same identity takes its own claims back at once instead of waiting them out.
    sa.Column("lease_owner", sa.String(255), nullable=True),
    # ``liveactivity``: an event's Live Activity push (``provider_token`` then holds the
    # push-to-start or activity token it goes to); NULL: the route's usual notification.
    sa.Column("push_type", sa.String(16), nullable=True),
    # The key its operation was accepted under (``operations.sender``): the dispatcher shares
    # each claim among the senders with due work by their keys' weights.
    sa.Column("sender", sa.String(40), nullable=False, server_default="root"),
    # A direct send's app (its tokens belong to no device); NULL: the device's app, or the
    # ``default`` app for a direct send without one.
    sa.Column("app", sa.String(64), nullable=True),
    sa.Index("ix_deliveries_inbox", "device_key", "inbox", "seq"),
    sa.Index("ix_deliveries_due", "state", "route", "next_attempt_at"),
    sa.Index("ix_deliveries_op", "op_pk"),
    # The fair claim: the senders with queued work (a skip scan over ``sender``), then each
    # one's due deliveries on a route in order (seq last: PostgreSQL reads a page of a big
    # backlog in order and stops, instead of sorting all of it).
    sa.Index("ix_deliveries_sender_due", "state", "sender", "route", "next_attempt_at", "seq"),
    # Scheduled sends waiting for their time: only those rows are in it.
    sa.Index("ix_deliveries_scheduled", "next_attempt_at", "op_pk",
             sqlite_where=sa.text("state = 'scheduled'"),
             postgresql_where=sa.text("state = 'scheduled'")),
)


class random_hex_id(expression.FunctionElement[str]):
    """128 random bits as 32 lowercase hex characters, generated by the database (fan-out
    inserts make one per row without a round-trip)."""

    type = sa.String()
    inherit_cache = True


@compiles(random_hex_id, "sqlite")
def _hex_sqlite(_element: random_hex_id, _compiler: object, **_kw: object) -> str:
    return "lower(hex(randomblob(16)))"


@compiles(random_hex_id, "postgresql")
def _hex_pg(_element: random_hex_id, _compiler: object, **_kw: object) -> str:
    return "replace(gen_random_uuid()::text, '-', '')"


# --- OAuth 2.1 authorization server (pushgo.oauth) ---------------------------------------------
# Secrets are never stored: client secrets, codes, refresh tokens and CSRF tokens as SHA-256 hex
# of the (high-entropy) value. A grant is one user authorization of one client: the access
# token's ``sub``, its refresh-token family and the channels bound to it.

UrlText = sa.String(2048)

oauth_keys = sa.Table(
    "oauth_keys", metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("private_jwk", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    # Retired keys sign nothing new but verify until every token they signed has expired.
    sa.Column("retired_at", Ms, nullable=True),
    sa.Column("expires_at", Ms, nullable=True),
)

oauth_clients = sa.Table(
    "oauth_clients", metadata,
    sa.Column("client_id", UrlText, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # dcr | predefined | cimd
    sa.Column("secret_hash", sa.String(64), nullable=True),
    sa.Column("auth_method", sa.String(32), nullable=False),
    sa.Column("redirect_uris", sa.Text, nullable=False, server_default="[]"),
    sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    # Client ID Metadata Documents are cached until then.
    sa.Column("expires_at", Ms, nullable=True),
)

#: One row per rendered authorize or bind page: what the page was opened for and the hash of
#: its CSRF token; a page can be submitted successfully once.
oauth_requests = sa.Table(
    "oauth_requests", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # authorize | bind | revoke
    sa.Column("csrf_hash", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Column("used_at", Ms, nullable=True),
)

oauth_grants = sa.Table(
    "oauth_grants", metadata,
    sa.Column("grant_id", sa.String(64), primary_key=True),
    sa.Column("client_id", UrlText, nullable=False),
    sa.Column("scope", sa.String(255), nullable=False),
    sa.Column("resource", UrlText, nullable=False),
    sa.Column("issuer", UrlText, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    # The refresh-token family's absolute end.
    sa.Column("expires_at", Ms, nullable=False),
    # Set when its code was first exchanged; grants never activated are purged.
    sa.Column("activated_at", Ms, nullable=True),
    sa.Column("revoked_at", Ms, nullable=True),
    sa.Index("ix_oauth_grants_client", "client_id"),
)

oauth_channel_grants = sa.Table(
    "oauth_channel_grants", metadata,
    sa.Column("grant_id", sa.String(64),
              sa.ForeignKey("oauth_grants.grant_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("granted_at", Ms, nullable=False),
)

oauth_codes = sa.Table(
    "oauth_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("grant_id", sa.String(64),
              sa.ForeignKey("oauth_grants.grant_id", ondelete="CASCADE"), nullable=False),
    sa.Column("client_id", UrlText, nullable=False),
    sa.Column("redirect_uri", UrlText, nullable=False),
    sa.Column("code_challenge", sa.String(64), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Column("used_at", Ms, nullable=True),
)

oauth_refresh_tokens = sa.Table(
    "oauth_refresh_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("grant_id", sa.String(64),
              sa.ForeignKey("oauth_grants.grant_id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("idle_expires_at", Ms, nullable=False),
    # Set when exchanged for its successor; presenting it again revokes the family.
    sa.Column("rotated_at", Ms, nullable=True),
    sa.Index("ix_oauth_refresh_grant", "grant_id"),
)

oauth_bind_sessions = sa.Table(
    "oauth_bind_sessions", metadata,
    sa.Column("bind_session_id", sa.String(64), primary_key=True),
    sa.Column("grant_id", sa.String(64),
              sa.ForeignKey("oauth_grants.grant_id", ondelete="CASCADE"), nullable=False),
    sa.Column("action", sa.String(8), nullable=False),  # bind | revoke
    sa.Column("requested_channel_id", sa.String(26), nullable=True),
    sa.Column("redirect_uri", UrlText, nullable=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | completed | expired
    sa.Column("channel_id", sa.String(26), nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Column("completed_at", Ms, nullable=True),
    sa.Index("ix_oauth_bind_grant", "grant_id"),
)

OAUTH_TABLES = (oauth_keys, oauth_clients, oauth_requests, oauth_grants, oauth_channel_grants,
                oauth_codes, oauth_refresh_tokens, oauth_bind_sessions)

#: What a process's outbox pump last knew of each provider: its breaker state (closed, open,
#: half_open), the last transient failure and since when the provider has been unavailable.
#: One row per route, written on each breaker change by whichever process saw it, read by
#: delivery status so every process sharing the outbox can say why deliveries wait.
#: The gateway's Web Push application server key (VAPID, P-256): one row, created at the first
#: start, read by every process sharing the database (browsers subscribed with its public key).
webpush_keys = sa.Table(
    "webpush_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("private_pem", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
)

provider_health = sa.Table(
    "provider_health", metadata,
    sa.Column("route", sa.String(16), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_error", sa.String(255), nullable=True),
    sa.Column("since", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
)

# --- Live Activities (pushgo.store.liveactivities) -------------------------------------------

#: An iOS device's push-to-start token (one per device): an event created on a channel it
#: follows starts a Live Activity with it.
live_activity_start_tokens = sa.Table(
    "live_activity_start_tokens", metadata,
    sa.Column("device_key", sa.String(128),
              sa.ForeignKey("devices.device_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("token", sa.String(256), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
)

#: Which Live Activity (its update token) shows which event on which device. Updates and the
#: close of the event go to ``token``; the row goes when the event closes or the token dies.
live_activities = sa.Table(
    "live_activities", metadata,
    sa.Column("device_key", sa.String(128),
              sa.ForeignKey("devices.device_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(256), nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index("ix_live_activities_event", "channel_id", "event_id"),
)

LIVE_ACTIVITY_TABLES = (live_activity_start_tokens, live_activities)
#: Sends that repeat until acknowledged (``repeat`` on a message or an event): one row per
#: operation, its receipt. A round is due at ``next_at`` (NULL once stopped); ``sends``
#: counts the fan-outs made, the first included. The first acknowledgement names its device,
#: time and path (``acked_*``, kept even when it comes after the repeats stopped);
#: ``stopped`` says why no more rounds come (acked, event_closed, max_reached, expired,
#: cancelled).
repeats = sa.Table(
    "repeats", metadata,
    sa.Column("op_pk", BigId, primary_key=True, autoincrement=False),
    sa.Column("channel_id", sa.String(26), nullable=False),
    sa.Column("op_id", sa.String(128), nullable=False),
    sa.Column("entity_type", sa.String(16), nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("every_ms", Ms, nullable=False),
    sa.Column("max_sends", sa.Integer, nullable=False),
    sa.Column("sends", sa.Integer, nullable=False),
    sa.Column("next_at", Ms, nullable=True),
    sa.Column("expires_at", Ms, nullable=False),
    sa.Column("acked_by", sa.String(128), nullable=True),
    sa.Column("acked_at", Ms, nullable=True),
    sa.Column("acked_via", sa.String(32), nullable=True),
    sa.Column("stopped", sa.String(16), nullable=True),
    sa.Column("stopped_at", Ms, nullable=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index("ix_repeats_due", "next_at"),
    sa.Index("ix_repeats_op_id", "op_id"),
    sa.Index("ix_repeats_entity", "channel_id", "entity_id"),
)

#: The update tokens the PushGo iOS app registers itself (``POST /v1/activity/register``): an
#: activity it started from an event's notification, known by the event alone (the app sends
#: no device key). Updates and the close of the event go to each token as well as the
#: devices' usual notifications; the rows go when the event closes, the app unregisters or
#: APNs says the token is dead.
live_activity_keys = sa.Table(
    "live_activity_keys", metadata,
    sa.Column("channel_id", sa.String(26), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(256), primary_key=True),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("updated_at", Ms, nullable=False),
    sa.Index("ix_live_activity_keys_token", "token"),
)

# --- Keys and the audit log (pushgo.store.keys, pushgo.store.audit) ------------------------------

#: Scoped API keys. The secret is never stored: ``secret_hash`` is the SHA-256 hex of the
#: (high-entropy) key; ``key_id`` is the key's public prefix, shown in lists and logs.
#: ``scopes``, ``channels`` and ``apps`` are JSON arrays (``channels``/``apps`` NULL: all).
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("channels", sa.Text, nullable=True),
    sa.Column("apps", sa.Text, nullable=True),
    sa.Column("rate_per_s", sa.Float, nullable=True),
    sa.Column("daily_notifications", sa.Integer, nullable=True),
    sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("created_by", sa.String(40), nullable=False),
    sa.Column("last_used_at", Ms, nullable=True),
    sa.Column("revoked_at", Ms, nullable=True),
)

#: Admin actions: who (a key id, ``root`` or ``cli``) did what to which target, when.
#: ``detail`` is a JSON object without secrets.
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Ms, nullable=False),
    sa.Column("actor", sa.String(40), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Index("ix_audit_log_at", "at"),
)

#: Notifications counted against a daily quota: per subject (``key:<key_id>``,
#: ``channel:<channel_id>``) and UTC day (days since the epoch), shared by every process.
quota_usage = sa.Table(
    "quota_usage", metadata,
    sa.Column("subject", sa.String(80), primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True),
    sa.Column("used", sa.BigInteger, nullable=False, server_default="0"),
)

#: Apps added with ``pushgo app add`` / ``POST /admin/apps`` (those of PUSHGO_APPS_FILE are not
#: stored). ``config`` is the JSON of pushgo.protocol.apps.App: file paths and ids, and the
#: WNS client secret, which is never shown again.
apps = sa.Table(
    "apps", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", Ms, nullable=False),
    sa.Column("created_by", sa.String(40), nullable=False),
)
