"""The provider client: HTTP/2 connections to APNs and FCM, their pool, the provider senders
and the provider credentials (APNs JWT, FCM access token, a remote token service).

Depends on :mod:`pushgo.protocol` alone: it knows jobs, connections and provider answers, not
channels, the outbox or the store. What to send and what to do with each outcome is the
delivery package's business (:mod:`pushgo.delivery`).
"""
