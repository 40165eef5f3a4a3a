"""Kafka TLS and SASL, translated once for both client libraries.

flitfeed talks to Kafka through two libraries: confluent-kafka (librdkafka: the
ranker, the index replicas, admin, the CLI) and Faust (aiokafka: the worker).
Both read the same ``FLITFEED_KAFKA_*`` settings through this module, so a
deployment configures security once:

>>> from flitfeed.settings import KafkaConfig
>>> s = KafkaConfig(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
...              kafka_sasl_username="worker", kafka_sasl_password="s3cret")
>>> cfg = librdkafka_security(s)
>>> cfg["security.protocol"], cfg["sasl.mechanism"], cfg["sasl.username"]
('SASL_PLAINTEXT', 'SCRAM-SHA-256', 'worker')
>>> creds = faust_credentials(s)
>>> type(creds).__name__, creds.mechanism.value, creds.protocol.value
('SASLCredentials', 'SCRAM-SHA-256', 'SASL_PLAINTEXT')
>>> librdkafka_security(KafkaConfig())   # PLAINTEXT: nothing to add
{}

Secrets (the SASL password) are read from the environment or a file at the
moment a client is configured and handed straight to the library; they are
never logged (the settings hold them as ``SecretStr``) and never exported as
metrics. :func:`redacted` is the form of a client config that may be logged.
"""

from __future__ import annotations

import ssl
from typing import Any

from flitfeed.settings import KafkaConfig

__all__ = ["SecurityConfigError", "librdkafka_security", "faust_credentials", "ssl_context", "redacted"]

#: librdkafka keys whose values are secrets.
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem"})


class SecurityConfigError(ValueError):
    """The security settings are incomplete or inconsistent (raised at start-up, before connecting)."""


def _uses_ssl(kafka: KafkaConfig) -> bool:
    return kafka.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(kafka: KafkaConfig) -> bool:
    return kafka.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _check(kafka: KafkaConfig) -> None:
    if _uses_sasl(kafka):
        if not kafka.kafka_sasl_username:
            raise SecurityConfigError(f"FLITFEED_KAFKA_SECURITY_PROTOCOL={kafka.kafka_security_protocol} needs "
                                      "FLITFEED_KAFKA_SASL_USERNAME")
        if not kafka.kafka_sasl_password.get_secret_value() and kafka.kafka_sasl_password_file is None:
            raise SecurityConfigError("SASL needs FLITFEED_KAFKA_SASL_PASSWORD or FLITFEED_KAFKA_SASL_PASSWORD_FILE")
    if (kafka.kafka_ssl_certfile is None) != (kafka.kafka_ssl_keyfile is None):
        raise SecurityConfigError("a TLS client certificate needs both FLITFEED_KAFKA_SSL_CERTFILE and "
                                  "FLITFEED_KAFKA_SSL_KEYFILE")
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_sasl_password_file"):
        path = getattr(kafka, name)
        if path is not None and not path.is_file():
            raise SecurityConfigError(f"FLITFEED_{name.upper()}={path} is not a readable file")


def librdkafka_security(kafka: KafkaConfig) -> dict[str, Any]:
    """The confluent-kafka (librdkafka) properties for the configured protocol."""
    _check(kafka)
    protocol = kafka.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": protocol}
    if _uses_ssl(kafka):
        # Hostname verification stays on (librdkafka's default): the broker's certificate must name it.
        if kafka.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(kafka.kafka_ssl_cafile)
        if kafka.kafka_ssl_certfile is not None:
            config["ssl.certificate.location"] = str(kafka.kafka_ssl_certfile)
            config["ssl.key.location"] = str(kafka.kafka_ssl_keyfile)
    if _uses_sasl(kafka):
        config["sasl.mechanism"] = kafka.kafka_sasl_mechanism
        config["sasl.username"] = kafka.kafka_sasl_username
        config["sasl.password"] = kafka.kafka_sasl_password_value()
    return config


def ssl_context(kafka: KafkaConfig) -> ssl.SSLContext:
    """The TLS context aiokafka uses: the CA to trust and, optionally, a client certificate."""
    _check(kafka)
    cafile = None if kafka.kafka_ssl_cafile is None else str(kafka.kafka_ssl_cafile)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if kafka.kafka_ssl_certfile is not None:
        context.load_cert_chain(str(kafka.kafka_ssl_certfile), str(kafka.kafka_ssl_keyfile))
    return context


def faust_credentials(kafka: KafkaConfig) -> Any:
    """``broker_credentials`` for the Faust app (None for PLAINTEXT).

    Faust hands them to every aiokafka client it makes (consumer, producer,
    changelog readers); ``SASLCredentials`` with an SSL context means SASL_SSL.
    """
    import faust

    _check(kafka)
    protocol = kafka.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(kafka))
    return faust.SASLCredentials(username=kafka.kafka_sasl_username,
                                 password=kafka.kafka_sasl_password_value(),
                                 mechanism=kafka.kafka_sasl_mechanism,
                                 ssl_context=ssl_context(kafka) if protocol == "SASL_SSL" else None)


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """A client config safe to log: secret values replaced.

    >>> redacted({"sasl.username": "u", "sasl.password": "p"})
    {'sasl.username': 'u', 'sasl.password': '***'}
    """
    return {k: ("***" if k in SECRET_KEYS else v) for k, v in config.items()}
