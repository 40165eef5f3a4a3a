"""Kafka TLS and SASL, translated once for both client libraries.

flitfeed talks to Kafka through two libraries: confluent-kafka (librdkafka: the
ranker, the index replicas, admin, the CLI) and Faust (aiokafka: the worker).
Both read the same ``FLITFEED_KAFKA_*`` settings through this module, so a
deployment configures security once:

>>> from flitfeed.settings import Settings
>>> s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
...              kafka_sasl_username="worker", kafka_sasl_password="s3cret")
>>> cfg = librdkafka_security(s)
>>> cfg["security.protocol"], cfg["sasl.mechanism"], cfg["sasl.username"]
('SASL_PLAINTEXT', 'SCRAM-SHA-256', 'worker')
>>> creds = faust_credentials(s)
>>> type(creds).__name__, creds.mechanism.value, creds.protocol.value
('SASLCredentials', 'SCRAM-SHA-256', 'SASL_PLAINTEXT')
>>> librdkafka_security(Settings())   # PLAINTEXT: nothing to add
{}

Secrets (the SASL password) are read from the environment or a file at the
moment a client is configured and handed straight to the library; they are
never logged (settings hold them as ``SecretStr``) and never exported as
metrics. :func:`redacted` is the form of a client config that may be logged.
"""

from __future__ import annotations

import ssl
from typing import Any

from flitfeed.settings import Settings

__all__ = ["SecurityConfigError", "librdkafka_security", "faust_credentials", "ssl_context", "redacted"]

#: librdkafka keys whose values are secrets.
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem"})


class SecurityConfigError(ValueError):
    """The security settings are incomplete or inconsistent (raised at start-up, before connecting)."""


def _uses_ssl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _check(settings: Settings) -> None:
    if _uses_sasl(settings):
        if not settings.kafka_sasl_username:
            raise SecurityConfigError(f"FLITFEED_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
                                      "FLITFEED_KAFKA_SASL_USERNAME")
        if not settings.kafka_sasl_password.get_secret_value() and settings.kafka_sasl_password_file is None:
            raise SecurityConfigError("SASL needs FLITFEED_KAFKA_SASL_PASSWORD or FLITFEED_KAFKA_SASL_PASSWORD_FILE")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise SecurityConfigError("a TLS client certificate needs both FLITFEED_KAFKA_SSL_CERTFILE and "
                                  "FLITFEED_KAFKA_SSL_KEYFILE")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_sasl_password_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SecurityConfigError(f"FLITFEED_{name.upper()}={path} is not a readable file")


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """The confluent-kafka (librdkafka) properties for the configured protocol."""
    _check(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": protocol}
    if _uses_ssl(settings):
        # Hostname verification stays on (librdkafka's default): the broker's certificate must name it.
        if settings.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile is not None:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
            config["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
    if _uses_sasl(settings):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password_value()
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context aiokafka uses: the CA to trust and, optionally, a client certificate."""
    _check(settings)
    cafile = None if settings.kafka_ssl_cafile is None else str(settings.kafka_ssl_cafile)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if settings.kafka_ssl_certfile is not None:
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the Faust app (None for PLAINTEXT).

    Faust hands them to every aiokafka client it makes (consumer, producer,
    changelog readers); ``SASLCredentials`` with an SSL context means SASL_SSL.
    """
    import faust

    _check(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                 password=settings.kafka_sasl_password_value(),
                                 mechanism=settings.kafka_sasl_mechanism,
                                 ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None)


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A client config safe to log: secret values replaced.

    >>> redacted({"sasl.username": "u", "sasl.password": "p"})
    {'sasl.username': 'u', 'sasl.password': '***'}
    """
    return {k: ("***" if k in SECRET_KEYS else v) for k, v in config.items()}
